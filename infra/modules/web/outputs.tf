output "url" {
  description = "Where the page is served."
  value       = "https://${aws_cloudfront_distribution.web.domain_name}"
}

output "origin" {
  description = "The page's origin, for the API's CORS_ALLOW_ORIGINS."
  value       = "https://${aws_cloudfront_distribution.web.domain_name}"
}

output "distribution_arn" {
  description = "The distribution, for the key policy that lets it read the SSE-KMS bucket."
  value       = aws_cloudfront_distribution.web.arn
}
