//! The HTTP API served in the test's own runtime on 127.0.0.1:0 with a
//! fresh migrated database, and a client that keeps status, headers and body.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use cpi::api::{self, AppState};
use cpi::metrics::Health;
use cpi::secret::Secret;

use super::TestDb;

/// The bearer token [`Server::start`] configures.
pub const TOKEN: &str = "test-token-5a1f0c";

/// `api::serve` on a free port, stopped by [`Server::stop`] (or when the test ends).
pub struct Server {
    /// The server's database (dropped with the server).
    pub db: TestDb,
    /// A pool on [`Server::db`], for seeding and checking rows.
    pub pool: sqlx::PgPool,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The health the server reports (tests flip it).
    pub health: Arc<Health>,
    client: reqwest::Client,
    token: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// A response: status, headers and the body as JSON (`Null` when empty or not JSON).
pub struct Resp {
    /// The status code.
    pub status: StatusCode,
    /// The response headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body as text.
    pub text: String,
    /// The body parsed as JSON.
    pub json: Value,
}

impl Server {
    /// The API with the test token configured.
    pub async fn start() -> Server {
        Self::start_with(Some(TOKEN), Health::new()).await
    }

    /// The API with `token` (none: no auth) and `health` as given.
    pub async fn start_with(token: Option<&str>, health: Health) -> Server {
        let db = TestDb::new().await;
        let pool = cpi::store::connect(&Secret::new(db.url())).await.unwrap();
        cpi::store::migrate(&pool).await.unwrap();
        let health = Arc::new(health);
        let mut state = AppState::new(pool.clone(), token.map(Secret::new), health.clone());
        // The CRUD tests place inboxes anywhere; confinement has its own tests.
        state.inbox_roots = Arc::new(vec!["/".into()]);
        Self::serve(db, pool, state).await
    }

    /// The API with the test token, its state as `adjust` leaves it (with no
    /// inbox root unless `adjust` sets one).
    pub async fn start_adjusted(adjust: impl FnOnce(&mut AppState)) -> Server {
        let db = TestDb::new().await;
        let pool = cpi::store::connect(&Secret::new(db.url())).await.unwrap();
        cpi::store::migrate(&pool).await.unwrap();
        let mut state = AppState::new(
            pool.clone(),
            Some(Secret::new(TOKEN)),
            Arc::new(Health::new()),
        );
        adjust(&mut state);
        Self::serve(db, pool, state).await
    }

    /// Serves `state` (whose pool may point anywhere) for `db`.
    pub async fn serve(db: TestDb, pool: sqlx::PgPool, state: AppState) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve_on(listener, db, pool, state).await
    }

    /// [`Server::serve`] on a listener the test bound (its address known
    /// before the state is made).
    pub async fn serve_on(
        listener: tokio::net::TcpListener,
        db: TestDb,
        pool: sqlx::PgPool,
        state: AppState,
    ) -> Server {
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let token = state.token.as_ref().map(|t| t.expose().to_string());
        let health = state.health.clone();
        let task = tokio::spawn(api::serve(listener, state, async {
            let _ = rx.await;
        }));
        Server {
            db,
            pool,
            base,
            health,
            client: reqwest::Client::new(),
            token,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the server and waits until it has shut down.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// A request with the configured token.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        self.call_auth(method, path, body, auth.as_deref()).await
    }

    /// A request with this `Authorization` header (or none).
    pub async fn call_auth(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        authorization: Option<&str>,
    ) -> Resp {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(a) = authorization {
            req = req.header("Authorization", a);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Resp::from(req.send().await.unwrap()).await
    }

    /// A request with a raw body and content type.
    pub async fn call_raw(&self, method: Method, path: &str, body: &str) -> Resp {
        let req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .header("Content-Type", "application/json")
            .body(body.to_string());
        Resp::from(req.send().await.unwrap()).await
    }

    /// GET `path` with the token.
    pub async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None).await
    }

    /// POST `body` to `path` with the token.
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(body)).await
    }

    /// PUT `body` to `path` with the token.
    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, Some(body)).await
    }

    /// DELETE `path` with the token.
    pub async fn delete(&self, path: &str) -> Resp {
        self.call(Method::DELETE, path, None).await
    }

    /// Creates a connection through the API; its id.
    pub async fn connection(&self, name: &str, url: &str) -> String {
        let r = self
            .post(
                "/connections",
                serde_json::json!({"name": name, "database_url": url}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.json["id"].as_str().unwrap().to_string()
    }

    /// Creates a project `name` with an empty config through the API; its id.
    pub async fn project(&self, name: &str) -> String {
        let r = self
            .post("/projects", serde_json::json!({"name": name, "config": {}}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.json["id"].as_str().unwrap().to_string()
    }

    /// Inserts a row a reconciler owns, as `cpi apply` would.
    pub async fn managed_connection(&self, name: &str, source: &str) -> String {
        let (id,): (uuid::Uuid,) = sqlx::query_as(
            "INSERT INTO cpi_connections (name, database_url, managed_by, source)
             VALUES ($1, 'postgresql://importer@db.internal/x', 'cpi', $2) RETURNING id",
        )
        .bind(name)
        .bind(source)
        .fetch_one(&self.pool)
        .await
        .unwrap();
        id.to_string()
    }
}

/// Sends `req` and reads the body as text; fails the test if either fails.
pub async fn body_text(req: reqwest::RequestBuilder) -> String {
    req.send().await.unwrap().text().await.unwrap()
}

impl Resp {
    async fn from(r: reqwest::Response) -> Resp {
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            text,
            json,
        }
    }

    /// The `Content-Type` header.
    pub fn content_type(&self) -> &str {
        self.headers["content-type"].to_str().unwrap()
    }

    /// The `error` message of an error body.
    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or_default()
    }
}
