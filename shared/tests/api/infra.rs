//! The Terraform in `infra/` against the code: every route the router serves has an API
//! Gateway route to the right function, and every function (and the GPU worker) gets a role
//! with no wildcard action and no `*` resource on data.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use hcl::{Body, Expression, ObjectKey};
use mmt_core::http::RouteGroup;

fn infra(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../infra")
        .join(path)
}

fn parse(path: &str) -> Body {
    let file = infra(path);
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    hcl::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// The attributes of every `locals` block of a file.
fn locals(body: &Body) -> BTreeMap<String, Expression> {
    body.blocks()
        .filter(|b| b.identifier() == "locals")
        .flat_map(|b| b.body().attributes())
        .map(|a| (a.key().to_owned(), a.expr().clone()))
        .collect()
}

fn key_name(key: &ObjectKey) -> String {
    match key {
        ObjectKey::Identifier(id) => id.to_string(),
        ObjectKey::Expression(Expression::String(s)) => s.clone(),
        other => panic!("unexpected object key {other:?}"),
    }
}

fn object(expr: &Expression) -> BTreeMap<String, Expression> {
    match expr {
        Expression::Object(o) => o.iter().map(|(k, v)| (key_name(k), v.clone())).collect(),
        other => panic!("expected an object, got {other:?}"),
    }
}

fn array(expr: &Expression) -> Vec<Expression> {
    match expr {
        Expression::Array(items) => items.clone(),
        other => panic!("expected a list, got {other:?}"),
    }
}

fn string(expr: &Expression) -> String {
    match expr {
        Expression::String(s) => s.clone(),
        other => panic!("expected a string, got {other:?}"),
    }
}

/// `local.<name>` → the local it names; anything else as is.
fn resolve(expr: &Expression, locals: &BTreeMap<String, Expression>) -> Expression {
    if let Expression::Traversal(t) = expr
        && t.expr == Expression::Variable(hcl::Variable::unchecked("local"))
        && let [hcl::TraversalOperator::GetAttr(name)] = t.operators.as_slice()
    {
        return locals[name.as_str()].clone();
    }
    expr.clone()
}

#[test]
fn every_router_route_has_an_api_gateway_route_to_its_function() {
    let mut served = BTreeMap::new();
    for group in RouteGroup::ALL {
        for (path, item) in group.openapi().paths.paths {
            let operations = serde_json::to_value(&item).unwrap();
            for (method, operation) in operations.as_object().unwrap() {
                let public = operation.get("security").is_none();
                served.insert(
                    format!("{} {path}", method.to_uppercase()),
                    (group.function_name().to_owned(), public),
                );
            }
        }
    }
    assert!(served.len() >= 14, "{served:?}");

    let routes = object(&locals(&parse("modules/mmt/routes.tf"))["routes"]);
    let provisioned: BTreeMap<String, (String, bool)> = routes
        .iter()
        .map(|(key, route)| {
            let route = object(route);
            let public = matches!(route["public"], Expression::Bool(true));
            (key.clone(), (string(&route["function"]), public))
        })
        .collect();
    assert_eq!(
        provisioned, served,
        "infra/modules/mmt/routes.tf must route exactly what the router serves, to the same function, public exactly where the API needs no token"
    );
}

/// Per function, the actions granted on the audit table.
fn audit_table_grants(
    functions: &BTreeMap<String, Expression>,
    locals: &BTreeMap<String, Expression>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut grants = BTreeMap::new();
    for (name, function) in functions {
        let function = object(function);
        let mut actions = BTreeSet::new();
        for statement in array(&function["statements"]) {
            let statement = object(&resolve(&statement, locals));
            if format!("{:?}", statement["resources"]).contains("audit_table_arn") {
                actions.extend(array(&statement["actions"]).iter().map(string));
            }
        }
        grants.insert(name.clone(), actions);
    }
    grants
}

const DATA_SERVICES: &[&str] = &["s3", "dynamodb", "sqs", "kms", "ssm", "logs"];

/// Checks one role's statements; returns the services it touches.
fn assert_least_privilege(
    who: &str,
    statements: &[Expression],
    locals: &BTreeMap<String, Expression>,
) -> BTreeSet<String> {
    let mut services = BTreeSet::new();
    for statement in statements {
        let statement = object(&resolve(statement, locals));
        let sid = string(&statement["sid"]);
        let actions: Vec<String> = array(&statement["actions"]).iter().map(string).collect();
        assert!(!actions.is_empty(), "{who}/{sid}: no actions");
        for action in &actions {
            assert!(
                !action.contains('*'),
                "{who}/{sid}: wildcard action {action}"
            );
            let (service, _) = action.split_once(':').expect("service:Action");
            services.insert(service.to_owned());
        }
        let resources = resolve(&statement["resources"], locals);
        let resources = match &resources {
            Expression::Array(items) => items.clone(),
            // A local holding a list (e.g. local.audio_paths), already checked below.
            other => vec![other.clone()],
        };
        for resource in &resources {
            let resource = resolve(resource, locals);
            let literal_star = match &resource {
                Expression::String(s) => s == "*",
                Expression::Array(items) => items.contains(&Expression::String("*".into())),
                _ => false,
            };
            let on_data = actions
                .iter()
                .any(|a| DATA_SERVICES.contains(&a.split(':').next().unwrap()));
            assert!(
                !(literal_star && on_data),
                "{who}/{sid}: data actions on resource \"*\""
            );
        }
    }
    services
}

#[test]
fn every_function_and_the_worker_get_a_least_privilege_role() {
    let main = parse("modules/mmt/main.tf");
    let locals = locals(&main);
    let functions = object(&locals["functions"]);

    let crates: BTreeSet<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
    assert_eq!(
        functions.keys().cloned().collect::<BTreeSet<_>>(),
        crates,
        "one Terraform function per crate under functions/"
    );

    let mut touched = BTreeMap::new();
    for (name, function) in &functions {
        let function = object(function);
        let statements = array(&function["statements"]);
        touched.insert(
            name.clone(),
            assert_least_privilege(name, &statements, &locals),
        );
    }
    // The functions that serve no data touch none; auth reads and appends the audit trail
    // and nothing else.
    for name in ["auth", "demo-status", "docs"] {
        assert!(
            !touched[name].contains("s3")
                && (name == "auth" || !touched[name].contains("dynamodb"))
                && !touched[name].contains("sqs"),
            "{name}: {:?}",
            touched[name]
        );
    }
    assert!(touched["transcribe"].contains("sqs"));
    // The audit table: PutItem for every function that acts on records, Query for auth
    // alone, and no function may update or delete an event.
    let audit_grants = audit_table_grants(&functions, &locals);
    for name in ["upload", "transcriptions", "retention-sweep", "auth"] {
        assert!(
            audit_grants[name].contains("dynamodb:PutItem"),
            "{name}: {audit_grants:?}"
        );
    }
    for (name, actions) in &audit_grants {
        let allowed: &[&str] = if name == "auth" {
            &["dynamodb:PutItem", "dynamodb:Query"]
        } else {
            &["dynamodb:PutItem"]
        };
        assert!(
            actions.iter().all(|a| allowed.contains(&a.as_str())),
            "{name}: {actions:?}"
        );
    }

    // The GPU worker's task role.
    let worker = main
        .blocks()
        .find(|b| {
            b.identifier() == "module"
                && b.labels().first().map(|l| l.as_str()) == Some("gpu_worker")
        })
        .expect("module gpu_worker");
    let statements = worker
        .body()
        .attributes()
        .find(|a| a.key() == "statements")
        .expect("gpu_worker statements");
    assert_least_privilege("gpu_worker", &array(statements.expr()), &locals);

    // The functions module grants a role per function and nothing beyond its statements but
    // its own logs and tracing (the only "*": X-Ray, which has no resource-level scoping).
    let module = parse("modules/functions/main.tf");
    let roles = module
        .blocks()
        .filter(|b| {
            b.identifier() == "resource"
                && b.labels().first().map(|l| l.as_str()) == Some("aws_iam_role")
        })
        .count();
    assert_eq!(
        roles, 1,
        "one aws_iam_role resource, for_each over the functions"
    );
    let document = module
        .blocks()
        .find(|b| {
            b.identifier() == "data" && b.labels().get(1).map(|l| l.as_str()) == Some("function")
        })
        .expect("data aws_iam_policy_document.function");
    for statement in document
        .body()
        .blocks()
        .filter(|b| b.identifier() == "statement")
    {
        let attr = |k: &str| {
            statement
                .body()
                .attributes()
                .find(|a| a.key() == k)
                .map(|a| a.expr().clone())
        };
        let actions: Vec<String> = attr("actions")
            .map(|a| array(&a).iter().map(string).collect())
            .unwrap_or_default();
        if attr("resources") == Some(Expression::Array(vec![Expression::String("*".into())])) {
            assert!(
                actions.iter().all(|a| a.starts_with("xray:")),
                "{actions:?} on *"
            );
        }
    }
}

/// A route is only as good as its function's role: the function that serves an EHR route
/// (deliveries, the connection's state) must reach the EHR table, where both live.
#[test]
fn every_function_serving_an_ehr_route_can_read_the_ehr_table() {
    let locals = locals(&parse("modules/mmt/main.tf"));
    let functions = object(&locals["functions"]);
    let mut checked = 0;
    for group in RouteGroup::ALL {
        let ehr_paths: Vec<String> = group
            .openapi()
            .paths
            .paths
            .into_keys()
            .filter(|path| path.split('/').any(|segment| segment == "ehr"))
            .collect();
        if ehr_paths.is_empty() {
            continue;
        }
        let function = object(&functions[group.function_name()]);
        let reaches_ehr_table = array(&function["statements"]).iter().any(|statement| {
            let statement = object(&resolve(statement, &locals));
            let actions: Vec<String> = array(&statement["actions"]).iter().map(string).collect();
            format!("{:?}", statement["resources"]).contains("ehr_table")
                && actions.iter().any(|a| a == "dynamodb:GetItem")
        });
        assert!(
            reaches_ehr_table,
            "{} serves {ehr_paths:?} but its role cannot read the EHR table",
            group.function_name()
        );
        checked += ehr_paths.len();
    }
    assert!(checked >= 2, "the EHR routes were found ({checked})");
}
