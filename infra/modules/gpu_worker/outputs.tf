output "cluster_name" {
  value = aws_ecs_cluster.worker.name
}

output "service_name" {
  value = aws_ecs_service.worker.name
}
