output "url" {
  value = aws_sqs_queue.work.id
}

output "arn" {
  value = aws_sqs_queue.work.arn
}

output "name" {
  value = aws_sqs_queue.work.name
}

output "dead_letter_url" {
  value = aws_sqs_queue.dead_letter.id
}

output "dead_letter_arn" {
  value = aws_sqs_queue.dead_letter.arn
}

output "dead_letter_name" {
  value = aws_sqs_queue.dead_letter.name
}
