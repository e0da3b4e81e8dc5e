# An example environment: one MMT deployment in one region. Copy this directory per
# environment (staging, prod) and keep its state in a remote backend.

terraform {
  required_version = ">= 1.11"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.93"
    }
  }

  # Remote state, locked: `terraform init -backend-config=backend.hcl` with bucket, key,
  # region and use_lockfile = true (see infra/README.md). Without it, state stays local.
  backend "s3" {}
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

  name               = var.name
  region             = var.region
  artifacts_dir      = var.artifacts_dir
  secret_values      = var.secret_values
  retention_days     = var.retention_days
  allow_guest_auth   = var.allow_guest_auth
  cors_allow_origins = var.cors_allow_origins
  jwt_authorizer     = var.jwt_authorizer
  gpu_worker         = var.gpu_worker
  ehr                = var.ehr
  telemetry          = var.telemetry
}
