output "api_url" {
  description = "Base URL of the API."
  value       = module.http_api.url
}

output "bucket" {
  value = module.storage.bucket_name
}

output "table" {
  value = module.storage.table_name
}

output "transcribe_queue_url" {
  value = module.transcribe_queue.url
}

output "transcribe_dead_letter_queue_url" {
  value = module.transcribe_queue.dead_letter_url
}

output "retention_dead_letter_queue_url" {
  value = module.retention_schedule.dead_letter_url
}

output "secret_parameters" {
  value = module.secrets.parameter_names
}

output "web_url" {
  description = "The web page (S3 + CloudFront), when web_page is on."
  value       = one(module.web[*].url)
}

output "alarm_topic_arn" {
  description = "The SNS topic of the operational alarms."
  value       = aws_sns_topic.alarms.arn
}

output "event_bus" {
  description = "The EventBridge bus of transcription and EHR-delivery events (null when event_bus is off)."
  value       = var.event_bus ? aws_cloudwatch_event_bus.events[0].name : null
}

output "live_dictation" {
  description = "Live dictation's WebSocket URL and the balancer's DNS name to point its domain at (CNAME or alias); null without gpu_worker.live_dictation."
  value = local.live_dictation_url == null ? null : {
    url      = local.live_dictation_url
    dns_name = module.gpu_worker[0].live_dictation_dns_name
  }
}
