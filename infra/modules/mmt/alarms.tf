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
  # Every alarm, by name: what it watches and what crossing the threshold means.
  dead_letter_queues = {
    (module.transcribe_queue.dead_letter_name) = "transcriptions failed for good"
    (module.ehr_queue.dead_letter_name)        = "EHR deliveries failed for good"
    (module.sweep_failures.name)               = "retention sweeps failed (records past retention may remain)"
    (module.sweep_failures.dead_letter_name)   = "retention sweep failures"
  }
  alarms = merge(
    { for queue, meaning in local.dead_letter_queues : "${queue}-not-empty" => {
      description = "${meaning}: inspect and redrive (infra/README.md)", namespace = "AWS/SQS"
      metric      = "ApproximateNumberOfMessagesVisible", dimensions = { QueueName = queue }
      statistic   = "Maximum", threshold = 0, periods = 1
    } },
    { for queue in [module.transcribe_queue.name, module.ehr_queue.name] : "${queue}-oldest-message" => {
      description = "A message has waited over an hour on ${queue}: consumers are stuck or failing", namespace = "AWS/SQS"
      metric      = "ApproximateAgeOfOldestMessage", dimensions = { QueueName = queue }
      statistic   = "Maximum", threshold = 3600, periods = 2
    } },
    { for pair in setproduct(keys(local.functions), ["Errors", "Throttles"]) : "${var.name}-${pair[0]}-${lower(pair[1])}" => {
      description = "${pair[0]}: ${lower(pair[1])} in the last 5 minutes", namespace = "AWS/Lambda"
      metric      = pair[1], dimensions = { FunctionName = module.functions.names[pair[0]] }
      statistic   = "Sum", threshold = 0, periods = 1
    } },
    { "${var.name}-api-5xx" = {
      description = "The API answered 5xx (a function failed or timed out)", namespace = "AWS/ApiGateway"
      metric      = "5xx", dimensions = { ApiId = module.http_api.api_id }
      statistic   = "Sum", threshold = 0, periods = 1
    } },
  )
}

resource "aws_cloudwatch_metric_alarm" "operations" {
  for_each            = local.alarms
  alarm_name          = each.key
  alarm_description   = each.value.description
  namespace           = each.value.namespace
  metric_name         = each.value.metric
  dimensions          = each.value.dimensions
  statistic           = each.value.statistic
  period              = 300
  evaluation_periods  = each.value.periods
  threshold           = each.value.threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}
