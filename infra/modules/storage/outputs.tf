output "bucket_name" {
  value = aws_s3_bucket.audio.id
}

output "bucket_arn" {
  value = aws_s3_bucket.audio.arn
}

output "table_name" {
  value = aws_dynamodb_table.records.name
}

output "table_arn" {
  value = aws_dynamodb_table.records.arn
}

output "audit_table_name" {
  value = aws_dynamodb_table.audit.name
}

output "audit_table_arn" {
  value = aws_dynamodb_table.audit.arn
}

output "ehr_table_name" {
  value = aws_dynamodb_table.ehr.name
}

output "ehr_table_arn" {
  value = aws_dynamodb_table.ehr.arn
}
