variable "name" {
  description = "Name of the schedule (and prefix of its role and DLQ)."
  type        = string
}

variable "target_function_arn" {
  description = "The retention-sweep function."
  type        = string
}

variable "schedule_expression" {
  description = "When to sweep: rate(...) or cron(...)."
  type        = string
  default     = "cron(15 3 * * ? *)"
}

variable "timezone" {
  type    = string
  default = "UTC"
}

variable "kms_key_arn" {
  description = "Encrypts the schedule's dead-letter queue."
  type        = string
}
