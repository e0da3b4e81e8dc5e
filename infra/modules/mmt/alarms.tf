# Operational alarms, e-mailed through one SNS topic: something was dead-lettered (a transcription,
# an EHR delivery or a retention sweep failed for good), a function errs or is throttled, the API
# answers 5xx, or work waits too long. Missing data (an idle deployment) is not an alarm.

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = aws_kms_key.data.arn
}

resource "aws_sns_topic_subscription" "alarm_email" {
  count     = var.alarm_email == null ? 0 : 1
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

locals {
  # Queue name → what a message there means. Each is checked for any visible message.
  dead_letters = {
    (module.transcribe_queue.dead_letter_name) = "transcriptions failed for good"
    (module.ehr_queue.dead_letter_name)        = "EHR deliveries failed for good"
    (module.sweep_failures.name)               = "retention sweeps failed (records past retention may remain)"
    (module.sweep_failures.dead_letter_name)   = "retention sweep failures"
  }
  # Queue name → the oldest message age (seconds) that means work is stuck.
  backlogs = {
    (module.transcribe_queue.name) = 3600
    (module.ehr_queue.name)        = 3600
  }
}

resource "aws_cloudwatch_metric_alarm" "dead_letters" {
  for_each            = local.dead_letters
  alarm_name          = "${each.key}-not-empty"
  alarm_description   = "${each.value}: inspect and redrive (infra/README.md)"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = each.key }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "oldest_message" {
  for_each            = local.backlogs
  alarm_name          = "${each.key}-oldest-message"
  alarm_description   = "A message has waited over ${each.value / 60} minutes on ${each.key}: consumers are stuck or failing"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = each.key }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 2
  threshold           = each.value
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "function" {
  for_each = {
    for pair in setproduct(keys(local.functions), ["Errors", "Throttles"]) : "${pair[0]}-${lower(pair[1])}" => { function = pair[0], metric = pair[1] }
  }
  alarm_name          = "${var.name}-${each.key}"
  alarm_description   = "${each.value.function}: ${lower(each.value.metric)} in the last 5 minutes"
  namespace           = "AWS/Lambda"
  metric_name         = each.value.metric
  dimensions          = { FunctionName = module.functions.names[each.value.function] }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "api_5xx" {
  alarm_name          = "${var.name}-api-5xx"
  alarm_description   = "The API answered 5xx (a function failed or timed out)"
  namespace           = "AWS/ApiGateway"
  metric_name         = "5xx"
  dimensions          = { ApiId = module.http_api.api_id }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}
