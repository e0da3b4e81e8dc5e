//! The Terraform in `infra/` against the code: every route the router serves has an API
//! Gateway route to the right function, every function (and the GPU worker) gets a role with
//! no wildcard action and no `*` resource on data, and the defects a review found stay fixed.

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

/// A role's statements: a list, `concat(...)` of lists, locals naming lists, and both branches
/// of a condition (`var.x ? [...] : []`), so a check sees everything a role may be granted.
fn statements(expr: &Expression, locals: &BTreeMap<String, Expression>) -> Vec<Expression> {
    match resolve(expr, locals) {
        Expression::Array(items) => items,
        Expression::FuncCall(call) if call.name.name.as_str() == "concat" => call
            .args
            .iter()
            .flat_map(|arg| statements(arg, locals))
            .collect(),
        Expression::Conditional(c) => {
            let mut both = statements(&c.true_expr, locals);
            both.extend(statements(&c.false_expr, locals));
            both
        }
        Expression::Parenthesis(inner) => statements(&inner, locals),
        other => panic!("expected a list of statements, got {other:?}"),
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
        for statement in statements(&function["statements"], locals) {
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
        let granted = statements(&function["statements"], &locals);
        touched.insert(
            name.clone(),
            assert_least_privilege(name, &granted, &locals),
        );
    }
    // The functions that serve no data touch none; auth reads and appends the audit trail
    // and nothing else. Every HTTP function reads the revocations and counts requests in the
    // records table's `A#` items, and in no other item of it.
    for name in ["auth", "demo-status", "docs"] {
        assert!(
            !touched[name].contains("s3") && !touched[name].contains("sqs"),
            "{name}: {:?}",
            touched[name]
        );
    }
    for name in ["demo-status", "docs"] {
        let granted = statements(&object(&functions[name])["statements"], &locals);
        for statement in granted.iter().map(|s| object(&resolve(s, &locals))) {
            let actions: Vec<String> = array(&statement["actions"]).iter().map(string).collect();
            if actions.iter().any(|a| a.starts_with("dynamodb:")) {
                assert_eq!(string(&statement["sid"]), "AccessLedger", "{name}");
                let condition = object(&statement["condition"]);
                assert_eq!(string(&condition["variable"]), "dynamodb:LeadingKeys");
                let values: Vec<String> = array(&condition["values"]).iter().map(string).collect();
                assert_eq!(values, ["A#*"], "{name}");
            }
        }
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
    assert_least_privilege(
        "gpu_worker",
        &self::statements(statements.expr(), &locals),
        &locals,
    );

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
        let reaches_ehr_table =
            statements(&function["statements"], &locals)
                .iter()
                .any(|statement| {
                    let statement = object(&resolve(statement, &locals));
                    let actions: Vec<String> =
                        array(&statement["actions"]).iter().map(string).collect();
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

/// Every `.tf` file under `infra/`, with its path relative to it.
fn terraform_files() -> Vec<(String, Body, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() && !name.starts_with('.') {
                walk(&path, out);
            } else if name.ends_with(".tf") {
                out.push(path);
            }
        }
    }
    let root = infra("");
    let mut paths = Vec::new();
    walk(&root, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let relative = path.strip_prefix(&root).unwrap().display().to_string();
            (relative, hcl::from_str(&text).unwrap(), text)
        })
        .collect()
}

fn default_of(variables: &Body, name: &str) -> Option<Expression> {
    variables
        .blocks()
        .find(|b| b.identifier() == "variable" && b.labels()[0].as_str() == name)
        .and_then(|b| b.body().attributes().find(|a| a.key() == "default"))
        .map(|a| a.expr().clone())
}

/// The defects a review of `infra/` against the AWS provider found, each kept fixed (the
/// reference and provider-schema checks of `make infra-check` guard the others).
#[test]
fn a_new_account_can_init_plan_and_apply_the_example() {
    let files = terraform_files();
    assert!(files.len() > 20, "{}", files.len());
    for (path, body, text) in &files {
        for terraform in body.blocks().filter(|b| b.identifier() == "terraform") {
            // `terraform init` needs nothing but the files: the S3 backend is an example to copy.
            assert!(
                terraform
                    .body()
                    .blocks()
                    .all(|b| b.identifier() != "backend"),
                "{path}: a backend block makes init fail without backend.hcl"
            );
            // The provider is bounded above: a major release cannot arrive unannounced.
            for providers in terraform
                .body()
                .blocks()
                .filter(|b| b.identifier() == "required_providers")
            {
                let aws = providers
                    .body()
                    .attributes()
                    .find(|a| a.key() == "aws")
                    .unwrap();
                let version = string(&object(aws.expr())["version"]);
                assert!(
                    version.contains(">= 6.25") && version.contains("< 7.0"),
                    "{path}: {version}"
                );
            }
        }
        // The functions verify their own tokens; an authorizer would demand a second one.
        assert!(
            !text.contains("aws_apigatewayv2_authorizer") && !text.contains("jwt_authorizer"),
            "{path}"
        );
    }
    // Reserved concurrency is opt-in: new accounts often have 10–50 in all.
    for variables in ["modules/mmt/variables.tf", "envs/example/variables.tf"] {
        assert_eq!(
            default_of(&parse(variables), "reserved_concurrency"),
            Some(Expression::Bool(false)),
            "{variables}"
        );
    }
    // The example declares what the README tells users to set, and passes it on.
    let example = std::fs::read_to_string(infra("envs/example/main.tf")).unwrap();
    for name in [
        "deletion_protection",
        "web_page",
        "log_retention_days",
        "secrets_version",
        "alarm_email",
        "reserved_concurrency",
    ] {
        assert!(
            default_of(&parse("envs/example/variables.tf"), name).is_some(),
            "{name} has a default"
        );
        assert!(
            example.contains(&format!("var.{name}")),
            "envs/example passes {name}"
        );
    }
    let outputs = std::fs::read_to_string(infra("envs/example/outputs.tf")).unwrap();
    assert!(outputs.contains("output \"web_url\""));

    // The key policy lets CloudFront's origin access control decrypt the page (that distribution
    // only), and EC2 Auto Scaling's service-linked role use the key and grant it to EBS.
    let kms = std::fs::read_to_string(infra("modules/mmt/kms.tf")).unwrap();
    for needed in [
        "cloudfront.amazonaws.com",
        "module.web[0].distribution_arn",
        "aws:SourceArn",
        "AWSServiceRoleForAutoScaling",
        "kms:CreateGrant",
        "kms:GrantIsForAWSResource",
    ] {
        assert!(kms.contains(needed), "kms.tf lacks {needed}");
    }

    // Every dead-letter queue raises an alarm, and failed sweeps outlive SQS's 4-day default.
    let alarms = std::fs::read_to_string(infra("modules/mmt/alarms.tf")).unwrap();
    let main = parse("modules/mmt/main.tf");
    for module in main.blocks().filter(|b| {
        b.identifier() == "module"
            && b.body()
                .attributes()
                .any(|a| a.key() == "source" && *a.expr() == Expression::String("../queues".into()))
    }) {
        let name = module.labels()[0].as_str();
        assert!(
            alarms.contains(&format!("(module.{name}.dead_letter_name)")),
            "no alarm on {name}'s dead letters"
        );
    }
    let sweeps = main
        .blocks()
        .find(|b| b.identifier() == "module" && b.labels()[0].as_str() == "sweep_failures")
        .unwrap();
    let retention = sweeps
        .body()
        .attributes()
        .find(|a| a.key() == "message_retention_seconds")
        .map(|a| a.expr().clone());
    assert_eq!(retention, Some(Expression::Number(1_209_600.into())));
}

/// The deployed page may only talk to its own API (security review, item 2): CloudFront's
/// Content-Security-Policy names the API's origin in `connect-src` and no scheme-wide source.
#[test]
fn the_deployed_page_connects_to_its_own_api_only() {
    let web = std::fs::read_to_string(infra("modules/web/main.tf")).unwrap();
    let policy = web
        .lines()
        .find(|l| l.trim_start().starts_with("content_security_policy ="))
        .expect("the page's CSP");
    let connect = policy
        .split("connect-src")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .trim();
    // The API, the identity provider the page signs in with and where it dictates live
    // (nothing for either when it has none).
    assert_eq!(
        connect, "'self' ${local.api_origin}${local.idp_origin}${local.live_origin}",
        "{policy}"
    );
    assert!(web.contains(
        r#"live_origin = var.live_dictation_url != null ? " ${regex("^wss://[^/]+", var.live_dictation_url)}" : """#
    ));
    assert!(web.contains(r#"api_origin = regex("^https?://[^/]+", var.api_base_url)"#));
    assert!(web.contains(
        r#"idp_origin = var.identity_provider != null ? " ${regex("^https://[^/]+", var.identity_provider)}" : """#
    ));
}

/// Least-privilege keys (security review, item 3): the RS256 private key is readable by the
/// auth function alone; the functions that serve no PHI (health, demo status, docs, auth) get
/// no field keys and say so (`SERVES_PHI=false`); the HS256 secret exists only during a dated
/// migration window; every function verifies with the public key from its environment.
#[test]
fn only_auth_signs_and_only_record_functions_hold_field_keys() {
    let main = parse("modules/mmt/main.tf");
    let locals = locals(&main);
    let functions = object(&locals["functions"]);
    // What each function may read from Parameter Store, as the references it names.
    let secrets_read = |name: &str| -> String {
        statements(&object(&functions[name])["statements"], &locals)
            .iter()
            .map(|s| object(&resolve(s, &locals)))
            .filter(|s| {
                array(&s["actions"])
                    .iter()
                    .any(|a| string(a) == "ssm:GetParameter")
            })
            .map(|s| format!("{:?}", resolve(&s["resources"], &locals)))
            .collect()
    };
    for name in functions.keys() {
        let read = secrets_read(name);
        assert_eq!(
            read.contains("jwt_private_key"),
            name == "auth",
            "{name} and the RS256 private key: {read}"
        );
        assert!(!read.contains("Identifier(jwt_secret)"), "{name}: {read}");
        let phi_free = ["health", "demo-status", "docs", "auth"].contains(&name.as_str());
        assert_eq!(
            read.contains("field_keys"),
            !phi_free,
            "{name} and the field keys: {read}"
        );
        let environment = format!("{:?}", object(&functions[name]).get("environment"));
        assert_eq!(
            environment.contains("phi_free_environment"),
            phi_free,
            "{name}: {environment}"
        );
    }
    let text = std::fs::read_to_string(infra("modules/mmt/main.tf")).unwrap();
    assert!(
        text.contains(
            r#"hs256_secrets     = var.hs256_accepted_until != null ? ["jwt-secret"] : []"#
        )
    );
    assert!(text.contains("INTERNAL_JWT_PUBLIC_KEY_PEM = var.jwt_public_key_pem"));
    assert!(
        text.contains(r#"SERVES_PHI                    = "false""#),
        "the PHI-free functions say so"
    );
}

/// Security review, item 13: the key policy lets CloudWatch Logs use the data key for this
/// deployment's log groups only; roles use it only through the services that hold data; the
/// audit trail has a key of its own; the GPU task cannot reach the instance metadata (and the
/// instance role) and its execution role reads only the worker's own secrets; the web page is
/// served with TLS 1.2 at least on the operator's domain, and logged.
#[test]
fn keys_metadata_and_the_web_edge_are_scoped() {
    let read = |path: &str| std::fs::read_to_string(infra(path)).unwrap();
    let kms = read("modules/mmt/kms.tf");
    assert!(
        !kms.contains(":log-group:*\""),
        "logs: any log group of the account"
    );
    assert!(kms.contains(
        r#"["/aws/lambda/${var.name}-*", "/aws/apigateway/${var.name}", "/ecs/${var.name}"]"#
    ));
    assert!(kms.contains(r#"resource "aws_kms_key" "audit""#));
    let storage = read("modules/storage/main.tf");
    let audit_table = &storage[storage
        .find(r#"resource "aws_dynamodb_table" "audit""#)
        .unwrap()..];
    let audit_table = &audit_table[..audit_table.find("\n}\n").unwrap()];
    assert!(
        audit_table.contains("kms_key_arn = var.audit_kms_key_arn"),
        "{audit_table}"
    );
    let main = read("modules/mmt/main.tf");
    assert!(
        main.contains(r#"variable = "kms:ViaService""#),
        "the data key only via services"
    );
    let worker = read("modules/gpu_worker/main.tf");
    assert!(worker.contains("ECS_AWSVPC_BLOCK_IMDS=true"));
    assert!(worker.contains("resources = distinct(values(var.secret_environment))"));
    assert!(!worker.contains("secret_parameter_arns"));
    let web = read("modules/web/main.tf");
    assert!(web.contains(
        r#"minimum_protocol_version       = var.certificate == null ? "TLSv1" : "TLSv1.2_2021""#
    ));
    assert!(web.contains(r#"dynamic "logging_config""#));
}

/// Notifications (issue 18): whoever sees an event queues it on the transcribe queue, its
/// consumers publish it on the bus, and an edit may rewrite a record's transcript; each role
/// has exactly the grant it needs for that.
#[test]
fn notifications_and_edits_have_the_grants_they_need() {
    let main = parse("modules/mmt/main.tf");
    let locals = locals(&main);
    let functions = object(&locals["functions"]);
    let grants = |granted: Vec<Expression>| -> Vec<(String, String)> {
        granted
            .iter()
            .map(|s| object(&resolve(s, &locals)))
            .flat_map(|s| {
                let resources = format!("{:?}", resolve(&s["resources"], &locals));
                array(&s["actions"])
                    .iter()
                    .map(|a| (string(a), resources.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let of = |name: &str| grants(statements(&object(&functions[name])["statements"], &locals));
    let has = |granted: &[(String, String)], action: &str, resource: &str| {
        granted
            .iter()
            .any(|(a, r)| a == action && r.contains(resource))
    };
    for name in ["transcribe", "ehr-push"] {
        assert!(
            has(&of(name), "sqs:SendMessage", "transcribe_queue"),
            "{name} queues notifications"
        );
    }
    assert!(has(
        &of("transcribe"),
        "events:PutEvents",
        "aws_cloudwatch_event_bus"
    ));
    assert!(has(&of("transcriptions"), "dynamodb:UpdateItem", "table"));
    for name in [
        "upload",
        "auth",
        "health",
        "docs",
        "demo-status",
        "transcriptions",
    ] {
        assert!(
            !of(name).iter().any(|(a, _)| a == "events:PutEvents"),
            "{name} publishes nothing"
        );
    }
    let worker = main
        .blocks()
        .find(|b| {
            b.identifier() == "module"
                && b.labels().first().map(|l| l.as_str()) == Some("gpu_worker")
        })
        .expect("module gpu_worker");
    let statements_expr = worker
        .body()
        .attributes()
        .find(|a| a.key() == "statements")
        .expect("gpu_worker statements")
        .expr()
        .clone();
    assert!(has(
        &grants(statements(&statements_expr, &locals)),
        "events:PutEvents",
        "aws_cloudwatch_event_bus"
    ));
}

/// Live dictation runs on the GPU worker, not in Lambda: an HTTPS (TLS 1.2+) listener on an
/// Application Load Balancer, sticky, with an idle timeout longer than the worker's pings,
/// forwarding to the worker service; the worker admits only the balancer; the page and
/// demo-status learn the wss:// URL.
#[test]
fn live_dictation_is_served_by_the_worker_behind_a_tls_balancer() {
    let live = std::fs::read_to_string(infra("modules/gpu_worker/live.tf")).unwrap();
    let body = parse("modules/gpu_worker/live.tf");
    let block = |kind: &str, name: &str| {
        body.blocks()
            .find(|b| {
                b.identifier() == "resource"
                    && b.labels().len() == 2
                    && b.labels()[0].as_str() == kind
                    && b.labels()[1].as_str() == name
            })
            .unwrap_or_else(|| panic!("resource {kind}.{name}"))
            .body()
            .clone()
    };
    let attribute = |body: &Body, key: &str| {
        body.attributes()
            .find(|a| a.key() == key)
            .map(|a| a.expr().clone())
            .unwrap_or_else(|| panic!("{key}"))
    };
    let listener = block("aws_lb_listener", "live");
    assert_eq!(string(&attribute(&listener, "protocol")), "HTTPS");
    assert_eq!(attribute(&listener, "port"), Expression::from(443));
    assert!(string(&attribute(&listener, "ssl_policy")).starts_with("ELBSecurityPolicy-TLS13-1-2"));
    let balancer = block("aws_lb", "live");
    assert_eq!(
        string(&attribute(&balancer, "load_balancer_type")),
        "application"
    );
    assert_eq!(
        attribute(&balancer, "drop_invalid_header_fields"),
        Expression::Bool(true)
    );
    let group = block("aws_lb_target_group", "live");
    let stickiness = group
        .blocks()
        .find(|b| b.identifier() == "stickiness")
        .expect("sticky sessions");
    assert_eq!(
        attribute(stickiness.body(), "enabled"),
        Expression::Bool(true)
    );
    assert!(live.contains("path                = \"/health/ready\""));
    let worker = std::fs::read_to_string(infra("modules/gpu_worker/main.tf")).unwrap();
    assert!(
        worker.contains("target_group_arn = aws_lb_target_group.live[0].arn"),
        "the service registers with the balancer"
    );
    assert!(worker.contains("min_capacity = local.live ? var.live_dictation.min_workers : 0"));
    // Only the balancer reaches the worker's port.
    let rule = block("aws_security_group_rule", "worker_from_live");
    assert_eq!(
        attribute(&rule, "source_security_group_id")
            .to_string()
            .trim(),
        "aws_security_group.live[0].id"
    );
    let variables = std::fs::read_to_string(infra("modules/gpu_worker/variables.tf")).unwrap();
    assert!(variables.contains("idle_timeout_secs = optional(number, 120)"));
    let mmt = std::fs::read_to_string(infra("modules/mmt/main.tf")).unwrap();
    assert!(mmt.contains("LIVE_DICTATION_URL = local.live_dictation_url"));
    assert!(
        mmt.contains("live_dictation_url = local.live_dictation_url"),
        "the page's CSP names it"
    );
}
