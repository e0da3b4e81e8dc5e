variable "name" {
  type = string
}

variable "region" {
  type = string
}

variable "image" {
  description = "The worker image (infra/gpu-worker/Dockerfile), e.g. <account>.dkr.ecr.<region>.amazonaws.com/mmt-gpu-worker:<tag>."
  type        = string
}

variable "image_repository_arn" {
  description = "ECR repository of the image (the execution role may pull only from it)."
  type        = string
}

variable "instance_type" {
  description = "GPU instance type (one GPU per task)."
  type        = string
  default     = "g5.xlarge"
}

variable "max_instances" {
  type    = number
  default = 2
}

variable "messages_per_task" {
  description = "Waiting messages that justify one more worker."
  type        = number
  default     = 20
}

variable "task_cpu" {
  type    = number
  default = 3072
}

variable "task_memory_mb" {
  type    = number
  default = 14336
}

variable "root_volume_gb" {
  type    = number
  default = 60
}

variable "vpc_id" {
  type = string
}

variable "subnet_ids" {
  description = "Private subnets with a route to AWS APIs (NAT or VPC endpoints)."
  type        = list(string)
}

variable "queue_name" {
  description = "The transcribe queue (its depth drives scaling)."
  type        = string
}

variable "environment" {
  description = "The worker's configuration (ENV, stores, queue URLs, WHISPER_*)."
  type        = map(string)
}

variable "secret_environment" {
  description = "Environment variable → SSM parameter ARN, injected by ECS at start (the execution role may read only these)."
  type        = map(string)
  default     = {}
}

variable "statements" {
  description = "The IAM statements the worker needs (nothing else is granted)."
  type = list(object({
    sid       = string
    actions   = list(string)
    resources = list(string)
    condition = optional(object({ test = string, variable = string, values = list(string) }))
  }))
}

variable "kms_key_arn" {
  type = string
}

variable "log_retention_days" {
  type    = number
  default = 365
}

variable "live_dictation" {
  description = "Serve live dictation (GET /v1/stream, a WebSocket) from the worker behind an Application Load Balancer: certificate_arn (ACM, for domain_name), public_subnet_ids (two AZs at least), allowed_cidrs (who may connect), min_workers (tasks kept running so a clinician can always dictate). null = queue work only, scaling to zero."
  type = object({
    certificate_arn   = string
    domain_name       = string
    public_subnet_ids = list(string)
    allowed_cidrs     = optional(list(string), ["0.0.0.0/0"])
    min_workers       = optional(number, 1)
    # Longer than the worker's ping interval (LIVE_IDLE_TIMEOUT_SECS / 4), so an open session's
    # pings keep the connection.
    idle_timeout_secs = optional(number, 120)
  })
  default = null
}
