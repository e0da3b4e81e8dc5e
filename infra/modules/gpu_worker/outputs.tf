output "cluster_name" {
  value = aws_ecs_cluster.worker.name
}

output "service_name" {
  value = aws_ecs_service.worker.name
}

output "live_dictation_url" {
  description = "Where the page dictates live (LIVE_DICTATION_URL); null without live_dictation. Point domain_name at live_dictation_dns_name."
  value       = var.live_dictation == null ? null : "wss://${var.live_dictation.domain_name}/v1/stream"
}

output "live_dictation_dns_name" {
  value = var.live_dictation == null ? null : aws_lb.live[0].dns_name
}
