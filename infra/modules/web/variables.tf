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
