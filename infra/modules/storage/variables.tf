variable "name" {
  description = "Prefix for every resource name."
  type        = string
}

variable "kms_key_arn" {
  description = "The deployment's KMS key: bucket default encryption and table SSE."
  type        = string
}

variable "audit_kms_key_arn" {
  description = "The audit trail's own KMS key (the audit table's SSE)."
  type        = string
}

variable "retention_days" {
  description = "Recordings older than this are expired by the bucket lifecycle (match RETENTION_DAYS)."
  type        = number
}

variable "deletion_protection" {
  description = "Protect the records table from deletion."
  type        = bool
  default     = true
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete a bucket that still holds objects (test environments only)."
  type        = bool
  default     = false
}

variable "cors_allow_origins" {
  description = "Web origins that may PUT upload parts to presigned URLs (the API's allowed origins)."
  type        = list(string)
  default     = []
}
