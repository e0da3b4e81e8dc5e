variable "name" {
  description = "The API's name."
  type        = string
}

variable "routes" {
  description = "Route key (\"METHOD /path\") → the function serving it, and whether it is public."
  type = map(object({
    function = string
    public   = bool
  }))
}

variable "function_invoke_arns" {
  description = "Function key → invoke ARN."
  type        = map(string)
}

variable "function_names" {
  description = "Function key → function name."
  type        = map(string)
}

variable "cors_allow_origins" {
  description = "Browser origins allowed to call the API; empty = no CORS."
  type        = list(string)
  default     = []
}

variable "throttling_burst_limit" {
  type    = number
  default = 100
}

variable "throttling_rate_limit" {
  type    = number
  default = 50
}

variable "kms_key_arn" {
  description = "Encrypts the access log group."
  type        = string
}

variable "log_retention_days" {
  type    = number
  default = 365
}

variable "sign_in_burst_limit" {
  description = "Burst of requests the gateway lets through to each POST /auth/* route, for all callers together."
  type        = number
  default     = 20
}

variable "sign_in_rate_limit" {
  description = "Steady requests per second the gateway lets through to each POST /auth/* route."
  type        = number
  default     = 5
}
