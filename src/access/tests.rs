use super::*;

fn binding(name: &str, role: Role, projects: &[&str], subjects: Vec<Subject>) -> Binding {
    Binding {
        name: name.into(),
        role,
        projects: projects.iter().map(|s| s.to_string()).collect(),
        connections: Vec::new(),
        subjects,
    }
}

fn policy() -> Policy {
    Policy {
        bindings: vec![
            binding(
                "abc-ops",
                Role::Operator,
                &["customer_abc*"],
                vec![
                    Subject::Token("ci".into()),
                    Subject::Group("team-alpha".into()),
                ],
            ),
            binding(
                "all-view",
                Role::Viewer,
                &["*"],
                vec![Subject::User("ann".into())],
            ),
            binding(
                "root",
                Role::Admin,
                &["*"],
                vec![Subject::Token("root".into())],
            ),
            Binding {
                connections: vec!["shared_db".into()],
                ..binding(
                    "xyz-admin",
                    Role::Admin,
                    &["xyz"],
                    vec![Subject::Token("xyz".into())],
                )
            },
        ],
        anonymous: None,
    }
}

fn project(p: &str) -> Target {
    Target::Project(p.into())
}

#[test]
fn anonymous_defaults_to_none_once_a_token_is_configured() {
    assert_eq!(Anonymous::Auto.role(false), Some(Role::Viewer));
    assert_eq!(Anonymous::Auto.role(true), None);
    assert_eq!(Anonymous::Viewer.role(true), Some(Role::Viewer));
    assert_eq!(Anonymous::None.role(false), None);
}

#[test]
fn roles_grant_as_the_issue_defines() {
    use Permission::*;
    assert!(Role::Viewer.grants(Read));
    for p in [Operate, ReadSecrets, Write, Audit] {
        assert!(!Role::Viewer.grants(p), "viewer {p}");
    }
    assert!(Role::Operator.grants(Read) && Role::Operator.grants(Operate));
    for p in [ReadSecrets, Write, Audit] {
        assert!(!Role::Operator.grants(p), "operator {p}");
    }
    for p in Permission::ALL {
        assert!(Role::Admin.grants(p));
    }
    assert_eq!(Role::least_for(Operate), Role::Operator);
    assert_eq!(Role::least_for(ReadSecrets), Role::Admin);
}

#[test]
fn a_binding_reaches_its_projects_by_name_or_glob_only() {
    let p = policy();
    let ci = Principal::Token("ci".into());
    assert!(allows(&p, &ci, Permission::Operate, &project("customer_abc_prod")).is_allowed());
    assert!(allows(&p, &ci, Permission::Read, &project("customer_abc")).is_allowed());
    assert!(!allows(&p, &ci, Permission::Read, &project("customer_xyz")).is_allowed());
    assert!(!allows(&p, &ci, Permission::Write, &project("customer_abc")).is_allowed());
    assert!(allows(&p, &ci, Permission::Read, &Target::Any).is_allowed());
    assert!(!allows(&p, &ci, Permission::Read, &Target::Everything).is_allowed());
}

#[test]
fn groups_and_users_are_subjects() {
    let p = policy();
    let bob = Principal::User {
        name: "bob".into(),
        groups: vec!["team-alpha".into()],
    };
    assert!(allows(&p, &bob, Permission::Operate, &project("customer_abc")).is_allowed());
    let ann = Principal::User {
        name: "ann".into(),
        groups: vec![],
    };
    assert!(allows(&p, &ann, Permission::Read, &project("anything")).is_allowed());
    assert!(!allows(&p, &ann, Permission::Operate, &project("anything")).is_allowed());
    // A token named like a user is not that user.
    let fake = Principal::Token("ann".into());
    assert!(!allows(&p, &fake, Permission::Read, &Target::Any).is_allowed());
}

#[test]
fn connections_follow_their_projects_plus_the_explicit_list() {
    let p = policy();
    let xyz = Principal::Token("xyz".into());
    let used = Target::Connection {
        name: "xyz_db".into(),
        projects: vec!["xyz".into()],
    };
    assert!(allows(&p, &xyz, Permission::ReadSecrets, &used).is_allowed());
    let shared = Target::Connection {
        name: "shared_db".into(),
        projects: vec![],
    };
    assert!(allows(&p, &xyz, Permission::ReadSecrets, &shared).is_allowed());
    let other = Target::Connection {
        name: "abc_db".into(),
        projects: vec!["customer_abc".into()],
    };
    assert!(!allows(&p, &xyz, Permission::ReadSecrets, &other).is_allowed());
    // A binding on every project reaches an unused connection too.
    let unused = Target::Connection {
        name: "spare".into(),
        projects: vec![],
    };
    assert!(allows(
        &p,
        &Principal::Token("root".into()),
        Permission::ReadSecrets,
        &unused
    )
    .is_allowed());
    assert!(!allows(&p, &xyz, Permission::ReadSecrets, &unused).is_allowed());
}

#[test]
fn legacy_token_is_admin_and_anonymous_is_nothing_or_viewer() {
    let mut p = policy();
    for perm in Permission::ALL {
        assert!(allows(&p, &Principal::LegacyAdmin, perm, &Target::Everything).is_allowed());
    }
    assert!(!allows(&p, &Principal::Anonymous, Permission::Read, &Target::Any).is_allowed());
    // Even if asked for more, anonymous requests are never more than viewers.
    p.anonymous = Some(Role::Admin);
    assert!(allows(&p, &Principal::Anonymous, Permission::Read, &project("x")).is_allowed());
    assert!(!allows(
        &p,
        &Principal::Anonymous,
        Permission::Operate,
        &project("x")
    )
    .is_allowed());
}

#[test]
fn a_denial_names_the_missing_permission_and_scope() {
    let p = policy();
    let ci = Principal::Token("ci".into());
    let Decision::Deny(d) = allows(&p, &ci, Permission::ReadSecrets, &project("customer_abc"))
    else {
        panic!("allowed")
    };
    let msg = d.to_string();
    assert!(msg.contains("\"read_secrets\""), "{msg}");
    assert!(msg.contains("project \"customer_abc\""), "{msg}");
    assert!(msg.contains("admin"), "{msg}");
    let Decision::Deny(d) = allows(&p, &Principal::Anonymous, Permission::Read, &Target::Any)
    else {
        panic!("allowed")
    };
    assert!(d.to_string().contains("Bearer"));
}

#[test]
fn visible_filters_a_list_by_the_bindings() {
    let p = policy();
    let ci = Principal::Token("ci".into());
    let names = ["customer_abc", "customer_xyz", "customer_abc_eu"];
    assert_eq!(
        p.visible(&ci, Permission::Read, names),
        vec!["customer_abc", "customer_abc_eu"]
    );
    assert!(p
        .visible(&Principal::Anonymous, Permission::Read, names)
        .is_empty());
}
