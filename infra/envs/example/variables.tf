variable "name" {
  description = "Deployment name, the prefix of every resource (e.g. mmt-prod)."
  type        = string
}

variable "region" {
  type = string
}

variable "artifacts_dir" {
  description = "The function zips (`make build-lambdas` writes target/lambda)."
  type        = string
  default     = "../../../target/lambda"
}

variable "secret_values" {
  description = "Set with TF_VAR_secret_values='{\"jwt-secret\":\"...\",\"openai-api-key\":\"...\",\"encryption-keys\":\"k1:...\",\"admin-api-key\":\"...\"}' at apply time; never written to state."
  type        = map(string)
  sensitive   = true
  ephemeral   = true
}

variable "retention_days" {
  type    = number
  default = 30
}

variable "allow_guest_auth" {
  type    = bool
  default = false
}

variable "cors_allow_origins" {
  type    = list(string)
  default = []
}

variable "jwt_authorizer" {
  type = object({
    issuer   = string
    audience = list(string)
  })
  default = null
}

variable "gpu_worker" {
  type = object({
    image                = string
    image_repository_arn = string
    instance_type        = optional(string, "g5.xlarge")
    max_instances        = optional(number, 2)
    vpc_id               = string
    subnet_ids           = list(string)
  })
  default = null
}

variable "ehr" {
  description = "EHR push (see modules/mmt); null turns it off."
  type = object({
    target            = string
    openemr_base_url  = optional(string)
    openemr_site      = optional(string, "default")
    openemr_client_id = optional(string)
    fhir_base_url     = optional(string)
    note_section      = optional(string, "subjective")
    max_attempts      = optional(number, 5)
  })
  default = null
}

variable "telemetry" {
  description = "Traces and error reports (see modules/mmt): sentry = true takes the DSN from secret_values[\"sentry-dsn\"]."
  type = object({
    sentry                    = optional(bool, false)
    sentry_traces_sample_rate = optional(number, 0)
    otlp_endpoint             = optional(string)
  })
  default = {}
}
