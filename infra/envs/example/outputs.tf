output "api_url" {
  value = module.mmt.api_url
}

output "bucket" {
  value = module.mmt.bucket
}

output "transcribe_queue_url" {
  value = module.mmt.transcribe_queue_url
}

output "transcribe_dead_letter_queue_url" {
  value = module.mmt.transcribe_dead_letter_queue_url
}

output "retention_dead_letter_queue_url" {
  value = module.mmt.retention_dead_letter_queue_url
}
