# An example environment: one MMT deployment in one region. Copy this directory per
# environment (staging, prod) and keep its state in a remote backend.

terraform {
  required_version = ">= 1.11"
  required_providers {
    aws = {
      source = "hashicorp/aws"
      # The schema scripts/check-terraform.py checks against is 6.25.0's.
      version = ">= 6.25, < 7.0"
    }
  }

  # State stays local unless backend.tf exists: for remote, locked state copy
  # backend.tf.example to backend.tf and backend.hcl.example to backend.hcl (infra/README.md).
}

provider "aws" {
  region = var.region
  default_tags {
    tags = {
      Application = "mmt"
      Environment = var.name
      DataClass   = "phi"
    }
  }
}

module "mmt" {
  source = "../../modules/mmt"

  name                      = var.name
  region                    = var.region
  artifacts_dir             = var.artifacts_dir
  secret_values             = var.secret_values
  secrets_version           = var.secrets_version
  jwt_public_key_pem        = var.jwt_public_key_pem
  hs256_accepted_until      = var.hs256_accepted_until
  alarm_email               = var.alarm_email
  primary_encryption_key_id = var.primary_encryption_key_id
  retention_days            = var.retention_days
  retention_schedule        = var.retention_schedule
  max_upload_bytes          = var.max_upload_bytes
  max_receive_count         = var.max_receive_count
  transcribe_timeout_s      = var.transcribe_timeout_s
  transcribe_concurrency    = var.transcribe_concurrency
  allow_guest_auth          = var.allow_guest_auth
  openai_base_url           = var.openai_base_url
  cors_allow_origins        = var.cors_allow_origins
  reserved_concurrency      = var.reserved_concurrency
  gpu_worker                = var.gpu_worker
  log_retention_days        = var.log_retention_days
  deletion_protection       = var.deletion_protection
  ehr                       = var.ehr
  telemetry                 = var.telemetry
  web_page                  = var.web_page
  web_certificate           = var.web_certificate
  oidc_issuers              = var.oidc_issuers
  web_sign_in               = var.web_sign_in
  event_bus                 = var.event_bus
  note_draft_model          = var.note_draft_model
}
