variable "name" {
  description = "Prefix for every function name."
  type        = string
}

variable "artifacts_dir" {
  description = "Where `cargo lambda build --release --arm64 --output-format zip` wrote <function>/bootstrap.zip (target/lambda)."
  type        = string
}

variable "functions" {
  description = "The functions: sizing, extra environment, and the IAM statements each one needs (nothing else is granted)."
  type = map(object({
    description          = string
    memory_mb            = number
    timeout_s            = number
    reserved_concurrency = optional(number)
    environment          = optional(map(string), {})
    dead_letter_arn      = optional(string)
    statements = list(object({
      sid       = string
      actions   = list(string)
      resources = list(string)
      condition = optional(object({ test = string, variable = string, values = list(string) }))
    }))
  }))
}

variable "environment" {
  description = "Configuration every function gets (see the configuration table in the README)."
  type        = map(string)
}

variable "kms_key_arn" {
  description = "Encrypts the functions' environment and log groups."
  type        = string
}

variable "log_retention_days" {
  description = "CloudWatch log retention. Logs carry no PHI; keep them as long as your audit policy asks."
  type        = number
  default     = 365
}
