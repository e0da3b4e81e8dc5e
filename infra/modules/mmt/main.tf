# The whole serverless deployment: storage, queues, secrets, one function per route group plus
# the queue consumer and the retention sweep, the HTTP API, the schedule, and (optionally) the
# GPU worker.

locals {
  bucket_arn = module.storage.bucket_arn
  # The API answers the configured origins and, when it is served, the web page's own.
  cors_allow_origins = distinct(concat(var.cors_allow_origins, var.web_page ? [module.web[0].origin] : []))
  audio_paths        = ["${module.storage.bucket_arn}/audio/*"]
  table_arns         = [module.storage.table_arn, "${module.storage.table_arn}/index/by_owner"]
  key_arn            = aws_kms_key.data.arn
  jwt_private_key    = module.secrets.parameter_arns["jwt-private-key"]
  openai_key         = module.secrets.parameter_arns["openai-api-key"]
  field_keys         = module.secrets.parameter_arns["encryption-keys"]
  admin_key          = module.secrets.parameter_arns["admin-api-key"]

  ehr_enabled     = var.ehr != null
  ehr_openemr     = try(var.ehr.target, "") == "openemr"
  ehr_table       = [module.storage.ehr_table_arn, "${module.storage.ehr_table_arn}/index/by_transcription"]
  ehr_secrets     = local.ehr_openemr ? ["openemr-client-secret", "openemr-refresh-token"] : []
  ehr_secret_arns = [for name in local.ehr_secrets : module.secrets.parameter_arns[name]]

  # Every function learns where the EHR outbox is (deleting a transcription deletes its
  # deliveries); only ehr-push gets the OpenEMR secrets.
  ehr_environment = local.ehr_enabled ? merge(
    {
      EHR_TARGET        = var.ehr.target
      EHR_TABLE         = module.storage.ehr_table_name
      SQS_EHR_QUEUE_URL = module.ehr_queue.url
      SQS_EHR_DLQ_URL   = module.ehr_queue.dead_letter_url
      EHR_NOTE_SECTION  = var.ehr.note_section
      EHR_MAX_ATTEMPTS  = tostring(var.ehr.max_attempts)
      EHR_LOGIN         = var.ehr.login
    },
    var.ehr.openemr_redirect_uri != null ? { OPENEMR_REDIRECT_URI = var.ehr.openemr_redirect_uri } : {},
    local.ehr_openemr ? {
      OPENEMR_BASE_URL  = var.ehr.openemr_base_url
      OPENEMR_SITE      = var.ehr.openemr_site
      OPENEMR_CLIENT_ID = var.ehr.openemr_client_id
    } : { FHIR_BASE_URL = var.ehr.fhir_base_url },
  ) : {}

  # Tokens are RS256: the private key is read by the auth function alone; every other process
  # verifies with the public key, which is no secret. While an HS256 deployment moves over
  # (hs256_accepted_until), the old HS256 secret stays readable so its tokens still verify.
  hs256_secrets     = var.hs256_accepted_until != null ? ["jwt-secret"] : []
  hs256_secret_arns = [for name in local.hs256_secrets : module.secrets.parameter_arns[name]]
  token_environment = merge(
    {
      USE_RSA_INTERNAL_JWT        = "true"
      INTERNAL_JWT_PUBLIC_KEY_PEM = var.jwt_public_key_pem
    },
    var.hs256_accepted_until != null ? {
      JWT_HS256_ACCEPTED_UNTIL = var.hs256_accepted_until
    } : {},
  )
  # Functions that never read or write a record or a recording hold no field keys (and their
  # roles reach no record either).
  phi_free_environment = {
    SERVES_PHI                    = "false"
    ENABLE_FIELD_ENCRYPTION       = "false"
    ENCRYPTION_KEYS_SSM_PARAMETER = ""
  }

  sentry_secrets     = var.telemetry.sentry ? ["sentry-dsn"] : []
  sentry_secret_arns = [for name in local.sentry_secrets : module.secrets.parameter_arns[name]]
  telemetry_environment = merge(
    var.telemetry.sentry ? {
      SENTRY_DSN_SSM_PARAMETER  = module.secrets.parameter_names["sentry-dsn"]
      SENTRY_TRACES_SAMPLE_RATE = tostring(var.telemetry.sentry_traces_sample_rate)
    } : {},
    var.telemetry.otlp_endpoint != null ? {
      OTEL_EXPORTER_OTLP_ENDPOINT = var.telemetry.otlp_endpoint
      OTEL_SERVICE_NAME           = var.name
    } : {},
  )

  # With a GPU worker, the worker consumes the transcribe queue (both engines); otherwise the
  # transcribe function does (cloud engine).
  gpu_worker = var.gpu_worker != null
  # The page and demo-status learn where to dictate; the workers serve it (live.tf).
  live_dictation     = var.gpu_worker == null ? null : var.gpu_worker.live_dictation
  live_dictation_url = local.live_dictation == null ? null : "wss://${local.live_dictation.domain_name}/v1/stream"

  # Notifications travel as jobs on the transcribe queue (queued by whoever sees the event,
  # sent by its consumer) and end as events on the bus.
  live_environment = local.live_dictation_url != null ? { LIVE_DICTATION_URL = local.live_dictation_url } : {}
  notify_environment = merge(
    var.event_bus ? { EVENT_BUS_NAME = aws_cloudwatch_event_bus.events[0].name } : {},
    var.note_draft_model != null ? { NOTE_DRAFT_MODEL = var.note_draft_model } : {},
    # Unset role maps stay out of the JSON: MMT's default (clinician) applies.
    length(var.oidc_issuers) > 0 ? { OIDC_ISSUERS = jsonencode([for i in var.oidc_issuers : { for k, v in i : k => v if v != null }]) } : {},
    var.web_sign_in != null ? merge(
      {
        WEB_OIDC_ISSUER    = var.web_sign_in.issuer_name
        WEB_OIDC_CLIENT_ID = var.web_sign_in.client_id
        WEB_OIDC_SCOPE     = var.web_sign_in.scope
      },
      var.web_sign_in.resource != null ? { WEB_OIDC_RESOURCE = var.web_sign_in.resource } : {},
    ) : {},
  )
  web_identity_provider = var.web_sign_in == null ? null : one([for i in var.oidc_issuers : i.issuer if i.name == var.web_sign_in.issuer_name])
  queue_notifications = var.event_bus ? [
    { sid = "QueueNotifications", actions = ["sqs:SendMessage"], resources = [module.transcribe_queue.arn] },
  ] : []
  publish_events = var.event_bus ? [
    { sid = "PublishEvents", actions = ["events:PutEvents"], resources = [aws_cloudwatch_event_bus.events[0].arn] },
  ] : []

  environment = merge(local.ehr_environment, local.telemetry_environment, local.token_environment, local.notify_environment, local.live_environment, {
    ENV                               = "prod"
    LOG_FORMAT                        = "json"
    DEMO_MODE                         = "false"
    DATA_DIR                          = "/tmp"
    BLOB_STORE                        = "s3"
    S3_BUCKET                         = module.storage.bucket_name
    S3_KMS_KEY_ID                     = local.key_arn
    RECORD_STORE                      = "dynamodb"
    DYNAMODB_TABLE                    = module.storage.table_name
    AUDIT_TABLE                       = module.storage.audit_table_name
    JOB_QUEUE                         = "sqs"
    SQS_TRANSCRIBE_QUEUE_URL          = module.transcribe_queue.url
    SQS_TRANSCRIBE_DLQ_URL            = module.transcribe_queue.dead_letter_url
    MAX_RECEIVE_COUNT                 = tostring(var.max_receive_count)
    RETENTION_DAYS                    = tostring(var.retention_days)
    MAX_UPLOAD_BYTES                  = tostring(var.max_upload_bytes)
    ALLOW_GUEST_AUTH                  = tostring(var.allow_guest_auth)
    ALLOW_DEMO_AUTH_IN_PRODUCTION     = tostring(var.allow_guest_auth)
    GUEST_CLOUD_ENGINE                = tostring(var.guest_cloud_engine)
    ENABLE_CLOUD_TRANSCRIPTION        = "true"
    OPENAI_BASE_URL                   = var.openai_base_url
    LOCAL_ENGINE_ON_WORKER            = tostring(local.gpu_worker)
    DEFAULT_ENGINE                    = local.gpu_worker ? "local" : "cloud"
    CORS_ALLOW_ORIGINS                = join(",", local.cors_allow_origins)
    INTERNAL_JWT_SECRET_SSM_PARAMETER = module.secrets.parameter_names["jwt-secret"]
    OPENAI_API_KEY_SSM_PARAMETER      = module.secrets.parameter_names["openai-api-key"]
    # PHI fields are sealed with AES-256-GCM before they reach DynamoDB (on top of its SSE).
    ENABLE_FIELD_ENCRYPTION       = "true"
    ENCRYPTION_KEYS_SSM_PARAMETER = module.secrets.parameter_names["encryption-keys"]
    PRIMARY_ENCRYPTION_KEY_ID     = var.primary_encryption_key_id
  })

  # What each function may touch. Nothing else is granted (see modules/functions), and no
  # statement names a wildcard action or a "*" resource on data: shared/tests/api/infra.rs.
  # What a function that serves no PHI reads: no field keys.
  read_secret = {
    sid       = "ReadSecrets"
    actions   = ["ssm:GetParameter"]
    resources = concat(local.hs256_secret_arns, local.sentry_secret_arns)
  }
  # What a function that reads or writes records reads: the field keys too.
  read_phi_secrets = {
    sid       = "ReadSecrets"
    actions   = ["ssm:GetParameter"]
    resources = concat([local.field_keys], local.hs256_secret_arns, local.sentry_secret_arns)
  }
  # The data key through the services that hold data with it, and no other way: a role
  # cannot decrypt an arbitrary ciphertext under the key by calling KMS itself.
  use_key = {
    sid       = "UseDataKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [local.key_arn]
    condition = {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [for service in ["s3", "ssm", "sqs", "dynamodb", "lambda"] : "${service}.${var.region}.amazonaws.com"]
    }
  }
  # Append-only: PutItem alone (the adapter's write is conditional on a new key).
  write_audit = {
    sid       = "AppendAudit"
    actions   = ["dynamodb:PutItem"]
    resources = [module.storage.audit_table_arn]
  }

  # Revoked tokens and shared counters (rate limits, failed sign-ins): the `A#` items of the
  # records table, and no others (DynamoDB's leading-key condition).
  access_ledger = {
    sid       = "AccessLedger"
    actions   = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
    resources = [module.storage.table_arn]
    condition = { test = "ForAllValues:StringLike", variable = "dynamodb:LeadingKeys", values = ["A#*"] }
  }

  functions = {
    health = {
      description          = "GET /health/live, /health/ready"
      memory_mb            = 128
      timeout_s            = 10
      reserved_concurrency = var.reserved_concurrency ? 10 : null
      environment          = local.phi_free_environment
      statements = [
        { sid = "PingTable", actions = ["dynamodb:DescribeTable"], resources = [module.storage.table_arn] },
        { sid = "PingBucket", actions = ["s3:ListBucket"], resources = [local.bucket_arn] },
        { sid = "QueueDepth", actions = ["sqs:GetQueueAttributes"], resources = [module.transcribe_queue.arn, module.transcribe_queue.dead_letter_arn] },
        local.read_secret,
        local.access_ledger,
        local.use_key,
      ]
    }
    demo-status = {
      description          = "GET /demo/status"
      memory_mb            = 128
      timeout_s            = 5
      reserved_concurrency = var.reserved_concurrency ? 10 : null
      environment          = local.phi_free_environment
      statements           = [local.read_secret, local.access_ledger, local.use_key]
    }
    auth = {
      description          = "POST /auth/guest, /auth/login, /auth/admin, /auth/logout, GET /.well-known/jwks.json, /v1/admin/audit"
      memory_mb            = 256
      timeout_s            = 10
      reserved_concurrency = var.reserved_concurrency ? 20 : null
      # Only the auth function signs tokens and exchanges the admin key for one.
      environment = merge(local.phi_free_environment, {
        ADMIN_API_KEY_SSM_PARAMETER                = module.secrets.parameter_names["admin-api-key"]
        INTERNAL_JWT_PRIVATE_KEY_PEM_SSM_PARAMETER = module.secrets.parameter_names["jwt-private-key"]
      })
      statements = [
        { sid = "ReadSecrets", actions = ["ssm:GetParameter"], resources = concat([local.jwt_private_key, local.admin_key], local.hs256_secret_arns, local.sentry_secret_arns) },
        { sid = "ReadAudit", actions = ["dynamodb:Query"], resources = [module.storage.audit_table_arn] },
        local.write_audit,
        local.access_ledger,
        local.use_key,
      ]
    }
    upload = {
      description          = "POST /v1/transcriptions, /v1/uploads, /v1/audio/transcriptions, /v1/audio/translations"
      memory_mb            = 1024
      timeout_s            = 60
      reserved_concurrency = var.reserved_concurrency ? 50 : null
      statements = [
        # Resumable uploads: S3 multipart uploads whose parts the client sends to URLs this
        # role presigns (UploadPart is s3:PutObject), listed and completed by this function.
        { sid = "StoreAudio", actions = ["s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"], resources = local.audio_paths },
        { sid = "FindUploads", actions = ["s3:ListBucketMultipartUploads"], resources = [local.bucket_arn] },
        { sid = "WriteRecords", actions = ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"], resources = [module.storage.table_arn] },
        { sid = "EnqueueJobs", actions = ["sqs:SendMessage"], resources = [module.transcribe_queue.arn] },
        { sid = "ReadSecrets", actions = ["ssm:GetParameter"], resources = concat([local.field_keys, local.openai_key], local.hs256_secret_arns, local.sentry_secret_arns) },
        local.write_audit,
        local.access_ledger,
        local.use_key,
      ]
    }
    transcriptions = {
      description = "GET /v1/transcriptions[/{id}[/transcript|/versions]], PATCH|DELETE /v1/transcriptions/{id}, POST /v1/transcriptions/{id}/structure, GET|PUT /v1/vocabulary"
      memory_mb   = 256
      # A drafted note waits on the chat model.
      timeout_s            = var.note_draft_model != null ? 60 : 10
      reserved_concurrency = var.reserved_concurrency ? 50 : null
      statements = [
        # UpdateItem: an edit is a conditional write of the transcript (a new version).
        { sid = "ReadRecords", actions = ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem", "dynamodb:DeleteItem"], resources = local.table_arns },
        { sid = "ForgetDeliveries", actions = ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:DeleteItem"], resources = local.ehr_table },
        # Deleting an unfinished resumable upload aborts its S3 multipart upload (the parts are
        # PHI); the sweep leaves that to the bucket's one-day lifecycle rule.
        { sid = "DeleteAudio", actions = ["s3:DeleteObject", "s3:AbortMultipartUpload"], resources = local.audio_paths },
        { sid = "FindUploads", actions = ["s3:ListBucketMultipartUploads"], resources = [local.bucket_arn] },
        # The draft model is reached with the OpenAI key.
        { sid = "ReadSecrets", actions = ["ssm:GetParameter"], resources = concat([local.field_keys], var.note_draft_model != null ? [local.openai_key] : [], local.hs256_secret_arns, local.sentry_secret_arns) },
        local.write_audit,
        local.access_ledger,
        local.use_key,
      ]
    }
    ehr-push = {
      description          = "POST|GET /v1/transcriptions/{id}/ehr, GET /v1/ehr/patients[/{id}/encounters], and the EHR queue's deliveries"
      memory_mb            = 256
      timeout_s            = 60
      reserved_concurrency = var.reserved_concurrency ? 10 : null
      environment = {
        for name in local.ehr_secrets : "${upper(replace(name, "-", "_"))}_SSM_PARAMETER" => module.secrets.parameter_names[name]
      }
      statements = concat([
        { sid = "ReadRecords", actions = ["dynamodb:GetItem"], resources = [module.storage.table_arn] },
        { sid = "Outbox", actions = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query"], resources = local.ehr_table },
        { sid = "EhrQueue", actions = ["sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"], resources = [module.ehr_queue.arn] },
        { sid = "EhrDeadLetter", actions = ["sqs:SendMessage"], resources = [module.ehr_queue.dead_letter_arn] },
        { sid = "ReadSecrets", actions = ["ssm:GetParameter"], resources = concat([local.field_keys], local.hs256_secret_arns, local.ehr_secret_arns, local.sentry_secret_arns) },
        local.write_audit,
        local.access_ledger,
        local.use_key,
      ], local.queue_notifications)
    }
    docs = {
      description          = "GET /openapi.json, /docs"
      memory_mb            = 128
      timeout_s            = 5
      reserved_concurrency = var.reserved_concurrency ? 5 : null
      # Production serves no API description unless asked to.
      environment = merge(local.phi_free_environment, { ENABLE_DOCS = tostring(var.enable_docs) })
      statements  = [local.read_secret, local.access_ledger, local.use_key]
    }
    transcribe = {
      description          = "Consumes the transcribe queue"
      memory_mb            = 1024
      timeout_s            = var.transcribe_timeout_s
      reserved_concurrency = var.reserved_concurrency ? var.transcribe_concurrency : null
      statements = concat([
        { sid = "ReadAudio", actions = ["s3:GetObject", "s3:DeleteObject"], resources = local.audio_paths },
        { sid = "UpdateRecords", actions = ["dynamodb:GetItem", "dynamodb:UpdateItem"], resources = [module.storage.table_arn] },
        { sid = "ConsumeQueue", actions = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"], resources = [module.transcribe_queue.arn] },
        { sid = "DeadLetter", actions = ["sqs:SendMessage"], resources = [module.transcribe_queue.dead_letter_arn] },
        { sid = "ReadSecrets", actions = ["ssm:GetParameter"], resources = concat([local.field_keys, local.openai_key], local.hs256_secret_arns, local.sentry_secret_arns) },
        local.use_key,
      ], local.queue_notifications, local.publish_events)
    }
    retention-sweep = {
      description          = "Deletes recordings and records past RETENTION_DAYS"
      memory_mb            = 256
      timeout_s            = 300
      reserved_concurrency = var.reserved_concurrency ? 1 : null
      dead_letter_arn      = module.sweep_failures.arn
      statements = [
        { sid = "FindExpired", actions = ["dynamodb:Scan", "dynamodb:DeleteItem"], resources = [module.storage.table_arn] },
        { sid = "ForgetDeliveries", actions = ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:DeleteItem"], resources = local.ehr_table },
        { sid = "DeleteAudio", actions = ["s3:DeleteObject"], resources = local.audio_paths },
        { sid = "FailedSweeps", actions = ["sqs:SendMessage"], resources = [module.sweep_failures.arn] },
        local.read_phi_secrets,
        local.write_audit,
        local.use_key,
      ]
    }
  }
}

module "storage" {
  source              = "../storage"
  name                = var.name
  kms_key_arn         = aws_kms_key.data.arn
  audit_kms_key_arn   = aws_kms_key.audit.arn
  retention_days      = var.retention_days
  deletion_protection = var.deletion_protection
  force_destroy       = !var.deletion_protection
  cors_allow_origins  = local.cors_allow_origins
}

module "transcribe_queue" {
  source                   = "../queues"
  name                     = "${var.name}-transcribe"
  kms_key_arn              = aws_kms_key.data.arn
  consumer_timeout_seconds = var.transcribe_timeout_s
  max_receive_count        = var.max_receive_count
}

# Asynchronous invocations of the sweep that fail after Lambda's own retries land here.
# EHR deliveries: one job per delivery; redrive after the delivery's attempt limit.
module "ehr_queue" {
  source                   = "../queues"
  name                     = "${var.name}-ehr"
  kms_key_arn              = aws_kms_key.data.arn
  consumer_timeout_seconds = 60
  max_receive_count        = try(var.ehr.max_attempts, 5)
}

# Nobody consumes failed sweeps: they stay the longest SQS allows, and an alarm says they are there.
module "sweep_failures" {
  source                    = "../queues"
  name                      = "${var.name}-sweep-failures"
  kms_key_arn               = aws_kms_key.data.arn
  consumer_timeout_seconds  = 30
  message_retention_seconds = 1209600
}

module "secrets" {
  source          = "../secrets"
  name            = var.name
  secret_names    = concat(["jwt-private-key", "openai-api-key", "encryption-keys", "admin-api-key"], local.hs256_secrets, local.ehr_secrets, local.sentry_secrets)
  secret_values   = var.secret_values
  secrets_version = var.secrets_version
  kms_key_arn     = aws_kms_key.data.arn
}

module "functions" {
  source             = "../functions"
  name               = var.name
  artifacts_dir      = var.artifacts_dir
  functions          = local.functions
  environment        = local.environment
  kms_key_arn        = aws_kms_key.data.arn
  log_retention_days = var.log_retention_days
}

resource "aws_lambda_event_source_mapping" "transcribe" {
  event_source_arn        = module.transcribe_queue.arn
  function_name           = module.functions.arns["transcribe"]
  batch_size              = 5
  function_response_types = ["ReportBatchItemFailures"]
  enabled                 = !local.gpu_worker

  scaling_config {
    maximum_concurrency = max(2, var.transcribe_concurrency)
  }
}

resource "aws_lambda_event_source_mapping" "ehr" {
  event_source_arn        = module.ehr_queue.arn
  function_name           = module.functions.arns["ehr-push"]
  batch_size              = 5
  function_response_types = ["ReportBatchItemFailures"]
  enabled                 = local.ehr_enabled

  scaling_config {
    maximum_concurrency = 2
  }
}

# The web page on S3 + CloudFront, talking to this deployment's API.
module "web" {
  count              = var.web_page ? 1 : 0
  source             = "../web"
  name               = var.name
  web_dir            = "${path.root}/../../../web"
  api_base_url       = module.http_api.url
  identity_provider  = local.web_identity_provider
  live_dictation_url = local.live_dictation_url
  kms_key_arn        = aws_kms_key.data.arn
  certificate        = var.web_certificate
  log_retention_days = var.log_retention_days
}

module "http_api" {
  source               = "../http_api"
  name                 = var.name
  routes               = local.routes
  function_invoke_arns = module.functions.invoke_arns
  function_names       = module.functions.names
  cors_allow_origins   = local.cors_allow_origins
  kms_key_arn          = aws_kms_key.data.arn
  log_retention_days   = var.log_retention_days
}

module "retention_schedule" {
  source              = "../schedule"
  name                = "${var.name}-retention"
  target_function_arn = module.functions.arns["retention-sweep"]
  schedule_expression = var.retention_schedule
  kms_key_arn         = aws_kms_key.data.arn
}

module "gpu_worker" {
  count  = local.gpu_worker ? 1 : 0
  source = "../gpu_worker"

  name                 = "${var.name}-gpu"
  region               = var.region
  image                = var.gpu_worker.image
  image_repository_arn = var.gpu_worker.image_repository_arn
  instance_type        = var.gpu_worker.instance_type
  max_instances        = var.gpu_worker.max_instances
  vpc_id               = var.gpu_worker.vpc_id
  subnet_ids           = var.gpu_worker.subnet_ids
  live_dictation       = var.gpu_worker.live_dictation
  queue_name           = module.transcribe_queue.name
  kms_key_arn          = aws_kms_key.data.arn
  log_retention_days   = var.log_retention_days

  environment = merge(local.environment, {
    ENABLE_LOCAL_TRANSCRIPTION = "true"
    LOCAL_ENGINE_ON_WORKER     = "false"
    WHISPER_USE_GPU            = "true"
    # One GPU: one decoder state at a time until parallel pieces on a GPU are measured.
    WHISPER_WORKERS = "1"
    DATA_DIR        = "/tmp"
  })
  # The worker signs nothing: it verifies with the public key in its environment.
  secret_environment = merge(
    { OPENAI_API_KEY = local.openai_key, ENCRYPTION_KEYS = local.field_keys },
    { for arn in local.hs256_secret_arns : "INTERNAL_JWT_SECRET" => arn },
    { for arn in local.sentry_secret_arns : "SENTRY_DSN" => arn },
  )
  statements = concat([
    { sid = "ReadAudio", actions = ["s3:GetObject", "s3:DeleteObject"], resources = local.audio_paths },
    { sid = "UpdateRecords", actions = ["dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DescribeTable"], resources = [module.storage.table_arn] },
    { sid = "ConsumeQueue", actions = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"], resources = [module.transcribe_queue.arn] },
    { sid = "DeadLetter", actions = ["sqs:SendMessage", "sqs:GetQueueAttributes"], resources = [module.transcribe_queue.dead_letter_arn] },
    { sid = "PingBucket", actions = ["s3:ListBucket"], resources = [local.bucket_arn] },
    # The worker protects its own task from scale-in while it holds a job (ECS_AGENT_URI).
    { sid = "ScaleInProtection", actions = ["ecs:UpdateTaskProtection", "ecs:GetTaskProtection"], resources = ["arn:${data.aws_partition.current.partition}:ecs:${var.region}:${data.aws_caller_identity.current.account_id}:task/${var.name}-gpu/*"] },
    local.use_key,
  ], local.queue_notifications, local.publish_events)
}

# Transcription and EHR-delivery events (ids and status only): an integration adds its own
# rule on this bus (an SQS queue, an API destination that signs, a Lambda function).
resource "aws_cloudwatch_event_bus" "events" {
  count = var.event_bus ? 1 : 0
  name  = "${var.name}-events"
}
