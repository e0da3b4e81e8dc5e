variable "name" {
  description = "Queue name; the dead-letter queue is <name>-dlq."
  type        = string
}

variable "kms_key_arn" {
  description = "The deployment's KMS key (SSE-KMS for both queues)."
  type        = string
}

variable "consumer_timeout_seconds" {
  description = "Timeout of the slowest consumer (Lambda function or worker job); visibility is 6x this."
  type        = number
}

variable "max_receive_count" {
  description = "Deliveries before a message is dead-lettered (match MAX_RECEIVE_COUNT)."
  type        = number
  default     = 3
}

variable "message_retention_seconds" {
  description = "How long an unconsumed message is kept (4 days; up to 14 for queues nobody consumes, such as failed sweeps)."
  type        = number
  default     = 345600
}
