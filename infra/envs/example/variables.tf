# Every variable of modules/mmt, passed through by main.tf; set them in terraform.tfvars.

variable "name" {
  description = "Prefix for every resource, e.g. mmt-prod."
  type        = string
}

variable "region" {
  type = string
}

variable "artifacts_dir" {
  description = "Where the function zips are (`make build-lambdas` writes target/lambda)."
  type        = string
  default     = "../../../target/lambda"
}

variable "secret_values" {
  description = "{ jwt-private-key = <RS256 private key, PEM>, openai-api-key = <key>, encryption-keys = \"k1:<base64 of 32 bytes>\", admin-api-key = <32+ random bytes> } (`mmt secrets --rsa --encryption 1` prints them; jwt-secret too while hs256_accepted_until is set). Ephemeral: TF_VAR_secret_values at apply; never in state."
  type        = map(string)
  sensitive   = true
  ephemeral   = true
}

variable "jwt_public_key_pem" {
  description = "The RS256 public key (PEM) every function verifies tokens with: INTERNAL_JWT_PUBLIC_KEY_PEM from `mmt secrets --rsa` (its private key goes in secret_values[\"jwt-private-key\"])."
  type        = string
}

variable "hs256_accepted_until" {
  description = "Only while moving an HS256 deployment to RS256: the RFC 3339 end of the window (at most 31 days ahead) in which HS256 tokens still verify; keep secret_values[\"jwt-secret\"] until then. null afterwards."
  type        = string
  default     = null
}

variable "secrets_version" {
  description = "Bump to write new secret_values to SSM (write-only values change only when this does)."
  type        = number
  default     = 1
}

variable "alarm_email" {
  description = "Where the operational alarms (dead letters, function errors and throttles, API 5xx, old messages, failed sweeps) are e-mailed; null = the SNS topic only (subscribe it yourself)."
  type        = string
  default     = null
}

variable "primary_encryption_key_id" {
  description = "The key of the encryption-keys ring that seals new PHI fields (rotate: add a key to the ring, then switch this)."
  type        = string
  default     = "k1"
}

variable "retention_days" {
  description = "RETENTION_DAYS; also the bucket's expiry and the table's TTL."
  type        = number
  default     = 30
}

variable "retention_schedule" {
  type    = string
  default = "cron(15 3 * * ? *)"
}

variable "max_upload_bytes" {
  type    = number
  default = 524288000
}

variable "max_receive_count" {
  type    = number
  default = 3
}

variable "transcribe_timeout_s" {
  description = "Timeout of the transcribe function; the queue's visibility is 6x this."
  type        = number
  default     = 300
}

variable "transcribe_concurrency" {
  description = "Most transcribe functions running at once (rate limits of the cloud engine)."
  type        = number
  default     = 10
}

variable "allow_guest_auth" {
  description = "Guest sign-in; off in production unless this is a public demo."
  type        = bool
  default     = false
}

variable "openai_base_url" {
  type    = string
  default = "https://api.openai.com/v1"
}

variable "cors_allow_origins" {
  type    = list(string)
  default = []
}

variable "reserved_concurrency" {
  description = "Reserve concurrency per function (about 170 in all). Off by default: new accounts often have a regional limit of 10-50 and the apply would fail; turn on once the account's limit is raised."
  type        = bool
  default     = false
}

variable "gpu_worker" {
  description = "Run local Whisper on GPU instances (ECS). null = cloud engine only, in Lambda."
  type = object({
    image                = string
    image_repository_arn = string
    instance_type        = optional(string, "g5.xlarge")
    max_instances        = optional(number, 2)
    vpc_id               = string
    subnet_ids           = list(string)
    # Live dictation (GET /v1/stream) from the workers, behind a load balancer with TLS.
    live_dictation = optional(object({
      certificate_arn   = string
      domain_name       = string
      public_subnet_ids = list(string)
      allowed_cidrs     = optional(list(string), ["0.0.0.0/0"])
      min_workers       = optional(number, 1)
      idle_timeout_secs = optional(number, 120)
    }))
  })
  default = null
}

variable "log_retention_days" {
  type    = number
  default = 365
}

variable "deletion_protection" {
  description = "Protect the table and keep a non-empty bucket on destroy. Turn off only for throwaway environments."
  type        = bool
  default     = true
}

variable "ehr" {
  description = "EHR push; null turns it off (the EHR routes answer 501). target = \"openemr\" (openemr_base_url, openemr_client_id; secrets openemr-client-secret and openemr-refresh-token in secret_values) or \"fhir\" (fhir_base_url)."
  type = object({
    target               = string
    login                = string
    openemr_redirect_uri = optional(string)
    openemr_base_url     = optional(string)
    openemr_site         = optional(string, "default")
    openemr_client_id    = optional(string)
    fhir_base_url        = optional(string)
    note_section         = optional(string, "subjective")
    max_attempts         = optional(number, 5)
  })
  default = null

  validation {
    condition     = var.ehr == null || contains(["openemr", "fhir"], try(var.ehr.target, ""))
    error_message = "ehr.target must be openemr or fhir."
  }
}

variable "telemetry" {
  description = "Where traces and error reports go. sentry = true reads the DSN from secret_values[\"sentry-dsn\"] (kept in SSM); otlp_endpoint is an OTLP/HTTP collector (https, or http://localhost:4318 for the ADOT Lambda layer). Logs and EMF metrics go to CloudWatch regardless."
  type = object({
    sentry                    = optional(bool, false)
    sentry_traces_sample_rate = optional(number, 0)
    otlp_endpoint             = optional(string)
  })
  default = {}

  validation {
    condition     = var.telemetry.sentry_traces_sample_rate >= 0 && var.telemetry.sentry_traces_sample_rate <= 1
    error_message = "telemetry.sentry_traces_sample_rate must be between 0 and 1."
  }
}

variable "web_certificate" {
  description = "The web page's own domain and its ACM certificate ARN (in us-east-1): served with TLS 1.2 at least. null: the *.cloudfront.net address."
  type = object({
    domain_name = string
    arn         = string
  })
  default = null
}

variable "web_page" {
  description = "Serve the web page from S3 + CloudFront (its origin is added to CORS_ALLOW_ORIGINS)."
  type        = bool
  default     = true
}

variable "oidc_issuers" {
  description = "The clinic's identity providers (see modules/mmt): name, issuer, audience, roles_claim, role_scopes."
  type = list(object({
    name            = string
    issuer          = string
    audience        = string
    audience_claim  = optional(string, "aud")
    roles_claim     = optional(string, "roles")
    role_scopes     = optional(map(list(string)))
    algorithms      = optional(list(string), ["RS256"])
    jwks_cache_secs = optional(number, 300)
  }))
  default = []
}

variable "event_bus" {
  description = "Publish transcription and EHR-delivery events on an EventBridge bus."
  type        = bool
  default     = true
}

variable "note_draft_model" {
  description = "A chat model that drafts note sections on request (null: no drafts)."
  type        = string
  default     = null
}

variable "web_sign_in" {
  description = "The page's sign-in through one of oidc_issuers (see modules/mmt)."
  type = object({
    issuer_name = string
    client_id   = string
    scope       = optional(string, "openid offline_access")
    resource    = optional(string)
  })
  default = null
}
