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

output "web_url" {
  description = "The web page, when web_page is on."
  value       = module.mmt.web_url
}

output "alarm_topic_arn" {
  description = "The SNS topic of the operational alarms (subscribe more endpoints to it)."
  value       = module.mmt.alarm_topic_arn
}

output "live_dictation" {
  value = module.mmt.live_dictation
}
