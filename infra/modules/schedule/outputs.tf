output "dead_letter_url" {
  value = aws_sqs_queue.dead_letter.id
}

output "schedule_arn" {
  value = aws_scheduler_schedule.sweep.arn
}
