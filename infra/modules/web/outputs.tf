output "url" {
  description = "Where the page is served."
  value       = "https://${aws_cloudfront_distribution.web.domain_name}"
}

output "origin" {
  description = "The page's origin, for the API's CORS_ALLOW_ORIGINS."
  value       = "https://${aws_cloudfront_distribution.web.domain_name}"
}
