variable "name" {
  description = "Parameter path prefix: /<name>/<secret>."
  type        = string
}

variable "secret_names" {
  description = "The secrets to keep, e.g. [\"jwt-secret\", \"openai-api-key\"]."
  type        = set(string)
}

variable "secret_values" {
  description = "Secret name → value. Ephemeral: pass with TF_VAR_secret_values at apply; never written to state or plan files."
  type        = map(string)
  sensitive   = true
  ephemeral   = true
}

variable "secrets_version" {
  description = "Bump to write new secret values (write-only attributes change only when this does)."
  type        = number
  default     = 1
}

variable "kms_key_arn" {
  type = string
}
