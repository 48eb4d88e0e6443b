//! The polluter (issue 27): clean CSV files of different shapes, and each
//! pollution a real export shows applied to them, so that a test can load
//! the polluted text and compare cell by cell with the clean file loaded
//! by `psql \copy`.
//!
//! A clean file is read once into its header and rows ([`Clean`]); a
//! [`Pollution`] renders them again with one defect ([`pollute`]). The
//! rendering is deterministic: the same clean file and pollution give the
//! same bytes, so a failure reproduces.

use std::path::{Path, PathBuf};

/// One clean file: its header, its rows, and how it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clean {
    /// A short name for messages (`la-riots`).
    pub name: String,
    /// The header's names.
    pub header: Vec<String>,
    /// The data rows, each as wide as the header.
    pub rows: Vec<Vec<String>>,
}

/// Every pollution of the issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pollution {
    /// Title lines (and a blank line) above the header.
    Preamble,
    /// `#` comment lines above the header and between rows.
    Comments,
    /// No header: the first line is data.
    NoHeader,
    /// The header's second name is empty.
    EmptyHeaderName,
    /// The header's last name is longer than PostgreSQL's 63 bytes.
    LongHeaderName,
    /// The header split over two lines (`a_b` as `a` above `b`).
    TwoHeaderRows,
    /// The header split over three lines.
    ThreeHeaderRows,
    /// `, ` between fields.
    CommaSpace,
    /// `; ` between fields.
    SemicolonSpace,
    /// `'` as the quote, every text field quoted.
    SingleQuote,
    /// The header has one separator too many (an empty last name).
    HeaderOneTooMany,
    /// The header lacks its last separator (two names run together).
    HeaderOneTooFew,
    /// Every tenth row has an extra field, every tenth (offset 5) lacks its last.
    Ragged,
    /// A second table (its own header, other columns) after the rows.
    SecondTable,
}

impl Pollution {
    /// Every pollution, in the order.
    pub const ALL: &'static [Pollution] = &[
        Pollution::Preamble,
        Pollution::Comments,
        Pollution::NoHeader,
        Pollution::EmptyHeaderName,
        Pollution::LongHeaderName,
        Pollution::TwoHeaderRows,
        Pollution::ThreeHeaderRows,
        Pollution::CommaSpace,
        Pollution::SemicolonSpace,
        Pollution::SingleQuote,
        Pollution::HeaderOneTooMany,
        Pollution::HeaderOneTooFew,
        Pollution::Ragged,
        Pollution::SecondTable,
    ];

    /// A short name (file names, the benchmark's rows).
    pub fn name(self) -> &'static str {
        match self {
            Pollution::Preamble => "preamble",
            Pollution::Comments => "comments",
            Pollution::NoHeader => "no_header",
            Pollution::EmptyHeaderName => "empty_header_name",
            Pollution::LongHeaderName => "long_header_name",
            Pollution::TwoHeaderRows => "two_header_rows",
            Pollution::ThreeHeaderRows => "three_header_rows",
            Pollution::CommaSpace => "comma_space",
            Pollution::SemicolonSpace => "semicolon_space",
            Pollution::SingleQuote => "single_quote",
            Pollution::HeaderOneTooMany => "header_one_too_many",
            Pollution::HeaderOneTooFew => "header_one_too_few",
            Pollution::Ragged => "ragged",
            Pollution::SecondTable => "second_table",
        }
    }
}

/// The long header name [`Pollution::LongHeaderName`] puts last (80 bytes).
pub const LONG_NAME: &str =
    "the_measured_value_of_this_column_as_the_export_names_it_in_its_header_line_x";

/// How fields are written: the separator, the quote, whether every text
/// field is quoted.
struct Style<'a> {
    sep: &'a str,
    quote: char,
    quote_text: bool,
}

const PLAIN: Style<'static> = Style {
    sep: ",",
    quote: '"',
    quote_text: false,
};

fn is_number(v: &str) -> bool {
    !v.is_empty() && v.parse::<f64>().is_ok()
}

/// One field as `style` writes it: quoted when it holds the separator's
/// first character, the quote or a line break (or is text and every text
/// field is quoted), the quote doubled inside.
fn field(v: &str, style: &Style) -> String {
    let sep0 = style.sep.chars().next().unwrap_or(',');
    let needs = v.contains(sep0)
        || v.contains(style.quote)
        || v.contains('\n')
        || v.contains('\r')
        || (style.quote_text && !v.is_empty() && !is_number(v));
    if !needs {
        return v.to_string();
    }
    let q = style.quote.to_string();
    format!("{q}{}{q}", v.replace(style.quote, &format!("{q}{q}")))
}

fn line(fields: &[String], style: &Style) -> String {
    let mut s = fields
        .iter()
        .map(|f| field(f, style))
        .collect::<Vec<_>>()
        .join(style.sep);
    s.push('\n');
    s
}

fn lines(rows: &[Vec<String>], style: &Style) -> String {
    rows.iter().map(|r| line(r, style)).collect()
}

/// The header split over `n` lines: a name `a_b_c` becomes `a`, `b`, `c`
/// on lines 1 to 3 (a name with fewer parts leaves the upper lines empty,
/// as a spreadsheet's merged cells export), so joining the non-empty parts
/// with `_` gives the name back.
pub fn split_header(header: &[String], n: usize) -> Vec<Vec<String>> {
    let mut out = vec![vec![String::new(); header.len()]; n];
    for (i, h) in header.iter().enumerate() {
        let parts: Vec<&str> = h.splitn(n, '_').collect();
        let skip = n - parts.len();
        for (k, p) in parts.iter().enumerate() {
            out[skip + k][i] = p.to_string();
        }
        // A name without `_` stays whole on the last line.
    }
    out
}

/// The clean file's text with `p` applied.
pub fn pollute(c: &Clean, p: Pollution) -> String {
    let body = lines(&c.rows, &PLAIN);
    let header = line(&c.header, &PLAIN);
    match p {
        Pollution::Preamble => format!(
            "Export of {}\nGenerated by the reporting tool, all figures provisional\n\n{header}{body}",
            c.name
        ),
        Pollution::Comments => {
            let mut s = format!("# {}\n# exported for the test\n{header}", c.name);
            for (i, r) in c.rows.iter().enumerate() {
                if i > 0 && i % 20 == 0 {
                    s.push_str("# page break\n");
                }
                s.push_str(&line(r, &PLAIN));
            }
            s
        }
        Pollution::NoHeader => body,
        Pollution::EmptyHeaderName => {
            let mut h = c.header.clone();
            let i = 1.min(h.len() - 1);
            h[i] = String::new();
            line(&h, &PLAIN) + &body
        }
        Pollution::LongHeaderName => {
            let mut h = c.header.clone();
            *h.last_mut().unwrap() = LONG_NAME.into();
            line(&h, &PLAIN) + &body
        }
        Pollution::TwoHeaderRows => lines(&split_header(&c.header, 2), &PLAIN) + &body,
        Pollution::ThreeHeaderRows => lines(&split_header(&c.header, 3), &PLAIN) + &body,
        Pollution::CommaSpace | Pollution::SemicolonSpace => {
            let sep = if p == Pollution::CommaSpace {
                ", "
            } else {
                "; "
            };
            let style = Style {
                sep,
                quote: '"',
                quote_text: false,
            };
            line(&c.header, &style) + &lines(&c.rows, &style)
        }
        Pollution::SingleQuote => {
            let style = Style {
                sep: ",",
                quote: '\'',
                quote_text: true,
            };
            line(&c.header, &style) + &lines(&c.rows, &style)
        }
        Pollution::HeaderOneTooMany => {
            let mut h = line(&c.header, &PLAIN);
            h.insert(h.len() - 1, ',');
            h + &body
        }
        Pollution::HeaderOneTooFew => {
            let mut h = c.header.clone();
            let last = h.pop().unwrap();
            let before = h.pop().unwrap();
            h.push(format!("{before} {last}"));
            line(&h, &PLAIN) + &body
        }
        Pollution::Ragged => {
            let mut s = header;
            for (i, r) in c.rows.iter().enumerate() {
                let mut r = r.clone();
                if i % 10 == 3 {
                    r.push("stray".into());
                } else if i % 10 == 8 {
                    r.pop();
                }
                s.push_str(&line(&r, &PLAIN));
            }
            s
        }
        Pollution::SecondTable => format!(
            "{header}{body}\nsummary,count\nrows,{}\nsource,{}\n",
            c.rows.len(),
            c.name
        ),
    }
}

/// How many of `c`'s cells pollution `p` takes out of the file (a ragged
/// row's missing last field): no loader can find those.
#[allow(dead_code)]
pub fn removed_cells(c: &Clean, p: Pollution) -> usize {
    match p {
        Pollution::Ragged => (0..c.rows.len()).filter(|i| i % 10 == 8).count(),
        _ => 0,
    }
}

/// The repository's test data folder.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// Reads a clean file (`rel` under tests/data) written with `delimiter`.
pub fn read_clean(rel: &str, delimiter: u8) -> Clean {
    let path = data_dir().join(rel);
    let mut r = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .from_path(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header = r.headers().unwrap().iter().map(str::to_string).collect();
    let rows = r
        .records()
        .map(|rec| rec.unwrap().iter().map(str::to_string).collect())
        .collect();
    let name = Path::new(rel)
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    Clean { name, header, rows }
}

/// A generated clean file of another shape: long text with commas and
/// quotes, a boolean, decimals (`n` rows).
pub fn products(n: usize) -> Clean {
    let header = [
        "product_id",
        "product_name",
        "description",
        "unit_price",
        "in_stock",
    ]
    .map(String::from)
    .to_vec();
    let rows = (1..=n)
        .map(|i| {
            vec![
                i.to_string(),
                format!("Boot model {i}"),
                format!(
                    "These waterproof hiking boots, size {}, are \"built to last\" on every trail",
                    36 + i % 12
                ),
                format!("{}.{:02}", 40 + i % 90, (i * 37) % 100),
                (i % 3 != 0).to_string(),
            ]
        })
        .collect();
    Clean {
        name: "products".into(),
        header,
        rows,
    }
}

/// The clean files of different shapes the tests pollute: 3, 6 and 11
/// columns of the public data sets, and the generated products.
pub fn clean_files() -> Vec<Clean> {
    vec![
        read_clean("vega_datasets/iowa-electricity.csv", b','),
        read_clean("vega_datasets/seattle-weather.csv", b','),
        read_clean("vega_datasets/la-riots.csv", b','),
        products(83),
    ]
}

/// The clean file as written without pollution (what `psql \copy` loads).
pub fn clean_text(c: &Clean) -> String {
    line(&c.header, &PLAIN) + &lines(&c.rows, &PLAIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, sep: u8, quote: u8, header: bool) -> Vec<Vec<String>> {
        csv::ReaderBuilder::new()
            .delimiter(sep)
            .quote(quote)
            .has_headers(header)
            .flexible(true)
            .from_reader(text.as_bytes())
            .records()
            .map(|r| r.unwrap().iter().map(str::to_string).collect())
            .collect()
    }

    #[test]
    fn polluter_clean_text_reads_back_as_the_clean_file() {
        for c in clean_files() {
            assert_eq!(
                read(&clean_text(&c), b',', b'"', true),
                c.rows,
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn polluter_each_pollution_changes_every_file_and_keeps_its_cells() {
        let c = products(30);
        for &p in Pollution::ALL {
            let text = pollute(&c, p);
            assert_ne!(text, clean_text(&c), "{}", p.name());
            // Every cell of the clean body is still there to recover.
            for cell in ["Boot model 17", "57.29"] {
                assert!(text.contains(cell), "{}: {cell} lost", p.name());
            }
        }
    }

    #[test]
    fn polluter_shapes_are_the_ones_named() {
        let c = products(30);
        let width = |text: &str, sep, quote| -> Vec<usize> {
            read(text, sep, quote, false).iter().map(Vec::len).collect()
        };
        let w = width(&pollute(&c, Pollution::HeaderOneTooMany), b',', b'"');
        assert_eq!((w[0], w[1]), (6, 5));
        let w = width(&pollute(&c, Pollution::HeaderOneTooFew), b',', b'"');
        assert_eq!((w[0], w[1]), (4, 5));
        let w = width(&pollute(&c, Pollution::Ragged), b',', b'"');
        assert_eq!((w[4], w[9], w[1]), (6, 4, 5));
        // `, ` read as `,`: the commas inside the text split it further.
        let t = pollute(&c, Pollution::CommaSpace);
        assert!(
            t.starts_with("product_id, product_name, description"),
            "{t}"
        );
        let rows = read(&pollute(&c, Pollution::SingleQuote), b',', b'\'', true);
        assert_eq!(rows, c.rows);
        assert_eq!(
            split_header(&c.header, 2),
            vec![
                vec!["product", "product", "", "unit", "in"],
                vec!["id", "name", "description", "price", "stock"]
            ]
        );
        assert_eq!(
            pollute(&c, Pollution::NoHeader).lines().next().unwrap(),
            clean_text(&c).lines().nth(1).unwrap()
        );
        assert!(LONG_NAME.len() > 63);
        let t = pollute(&c, Pollution::SecondTable);
        assert!(
            t.ends_with("summary,count\nrows,30\nsource,products\n"),
            "{t}"
        );
    }
}
