# A work queue with its dead-letter queue. A message that fails max_receive_count times moves
# to the DLQ, where it stays (14 days) for inspection and redrive.

resource "aws_sqs_queue" "dead_letter" {
  name                      = "${var.name}-dlq"
  message_retention_seconds = 1209600
  kms_master_key_id         = var.kms_key_arn
}

resource "aws_sqs_queue" "work" {
  name = var.name
  # A consumer's lease must outlast its longest run: AWS asks for at least 6x the function
  # timeout, so a batch in flight is never redelivered to a second consumer.
  visibility_timeout_seconds = var.consumer_timeout_seconds * 6
  message_retention_seconds  = var.message_retention_seconds
  receive_wait_time_seconds  = 20
  kms_master_key_id          = var.kms_key_arn

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dead_letter.arn
    maxReceiveCount     = var.max_receive_count
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "dead_letter" {
  queue_url = aws_sqs_queue.dead_letter.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.work.arn]
  })
}
