# Every route of the API and the function that serves it. This table must match the router
# (shared/src/http/mod.rs, RouteGroup): shared/tests/api/infra.rs checks it against the
# OpenAPI document the router generates. Public routes need no token; every other route
# verifies the bearer token in the function. (The part PUT is authorised by the signed grant in
# its URL instead; with S3 as the store, parts go to S3 and this route refuses them.)

locals {
  routes = {
    "GET /health/live"                       = { function = "health", public = true }
    "GET /health/ready"                      = { function = "health", public = true }
    "GET /demo/status"                       = { function = "demo-status", public = true }
    "POST /auth/guest"                       = { function = "auth", public = true }
    "POST /auth/login"                       = { function = "auth", public = true }
    "POST /auth/admin"                       = { function = "auth", public = true }
    "POST /auth/logout"                      = { function = "auth", public = false }
    "GET /.well-known/jwks.json"             = { function = "auth", public = true }
    "GET /v1/admin/audit"                    = { function = "auth", public = false }
    "GET /v1/admin/audit/verify"             = { function = "auth", public = false }
    "GET /v1/admin/ehr"                      = { function = "ehr-push", public = false }
    "POST /v1/transcriptions"                = { function = "upload", public = false }
    "POST /v1/uploads"                       = { function = "upload", public = false }
    "GET /v1/uploads/{id}"                   = { function = "upload", public = false }
    "POST /v1/uploads/{id}/parts"            = { function = "upload", public = false }
    "PUT /v1/uploads/{id}/parts/{number}"    = { function = "upload", public = true }
    "POST /v1/uploads/{id}/complete"         = { function = "upload", public = false }
    "POST /v1/audio/transcriptions"          = { function = "upload", public = false }
    "POST /v1/audio/translations"            = { function = "upload", public = false }
    "GET /v1/transcriptions"                 = { function = "transcriptions", public = false }
    "GET /v1/transcriptions/{id}"            = { function = "transcriptions", public = false }
    "DELETE /v1/transcriptions/{id}"         = { function = "transcriptions", public = false }
    "GET /v1/transcriptions/{id}/transcript" = { function = "transcriptions", public = false }
    "PATCH /v1/transcriptions/{id}"          = { function = "transcriptions", public = false }
    "GET /v1/transcriptions/{id}/versions"   = { function = "transcriptions", public = false }
    "POST /v1/transcriptions/{id}/structure" = { function = "transcriptions", public = false }
    "GET /v1/vocabulary"                     = { function = "transcriptions", public = false }
    "PUT /v1/vocabulary"                     = { function = "transcriptions", public = false }
    "POST /v1/transcriptions/{id}/ehr"       = { function = "ehr-push", public = false }
    "GET /v1/transcriptions/{id}/ehr"        = { function = "ehr-push", public = false }
    "GET /v1/ehr/patients"                   = { function = "ehr-push", public = false }
    "GET /v1/ehr/patients/{id}/encounters"   = { function = "ehr-push", public = false }
    "GET /v1/ehr/link"                       = { function = "ehr-push", public = false }
    "POST /v1/ehr/link"                      = { function = "ehr-push", public = false }
    "DELETE /v1/ehr/link"                    = { function = "ehr-push", public = false }
    "POST /v1/ehr/link/complete"             = { function = "ehr-push", public = false }
    "GET /openapi.json"                      = { function = "docs", public = true }
    "GET /docs"                              = { function = "docs", public = true }
  }
}
