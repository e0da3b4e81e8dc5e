variable "name" {
  description = "Prefix for every resource name."
  type        = string
}

variable "web_dir" {
  description = "The repository's web/ directory (index.html, app.js, app.css)."
  type        = string
}

variable "api_base_url" {
  description = "The API the page talks to (written into config.js)."
  type        = string
}

variable "kms_key_arn" {
  description = "The deployment's KMS key (the bucket's default encryption)."
  type        = string
}

variable "certificate" {
  description = "Your domain for the page and its ACM certificate (in us-east-1, as CloudFront requires): served with TLS 1.2 at least (TLSv1.2_2021). null serves *.cloudfront.net with CloudFront's default certificate, whose minimum CloudFront does not let you raise."
  type = object({
    domain_name = string
    arn         = string
  })
  default = null
}

variable "access_logs" {
  description = "Keep CloudFront's access logs (requester address, path, status) in a bucket of their own, for as many days as log_retention_days."
  type        = bool
  default     = true
}

variable "log_retention_days" {
  description = "How long the page's access logs are kept."
  type        = number
  default     = 90
}

variable "identity_provider" {
  description = "The issuer URL the page signs in with (PKCE), if any: named in connect-src beside the API."
  type        = string
  default     = null
}

variable "live_dictation_url" {
  description = "The WebSocket URL the page dictates live at (wss://…/v1/stream), if any: named in connect-src."
  type        = string
  default     = null
}
