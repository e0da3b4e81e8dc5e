# The web page (web/) on a private S3 bucket behind CloudFront: the same static files the
# one-process server serves at /, with config.js pointing at this deployment's API. Only
# CloudFront (origin access control) can read the bucket; every answer carries the page's
# security headers.

locals {
  # scheme://host[:port] of the API, as a CSP source.
  api_origin = regex("^https?://[^/]+", var.api_base_url)
}

resource "aws_s3_bucket" "web" {
  # checkov:skip=CKV_AWS_144:The page is rebuilt from the repository on every deploy; a replica adds nothing.
  # checkov:skip=CKV_AWS_18:CloudFront serves every request; its own logs are the place to look, and the files are public by design.
  # checkov:skip=CKV2_AWS_62:Nothing reacts to changes of the page's files.
  # checkov:skip=CKV2_AWS_61:The bucket holds three small files, replaced on deploy; there is nothing to expire.
  bucket_prefix = "${var.name}-web-"
  force_destroy = true
}

resource "aws_s3_bucket_public_access_block" "web" {
  bucket                  = aws_s3_bucket.web.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "web" {
  bucket = aws_s3_bucket.web.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "web" {
  bucket = aws_s3_bucket.web.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "web" {
  bucket = aws_s3_bucket.web.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_cloudfront_origin_access_control" "web" {
  name                              = "${var.name}-web"
  origin_access_control_origin_type = "s3"
  signing_behavior                  = "always"
  signing_protocol                  = "sigv4"
}

data "aws_iam_policy_document" "web" {
  statement {
    sid       = "CloudFrontReads"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.web.arn}/*"]
    principals {
      type        = "Service"
      identifiers = ["cloudfront.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "AWS:SourceArn"
      values   = [aws_cloudfront_distribution.web.arn]
    }
  }
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.web.arn, "${aws_s3_bucket.web.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "web" {
  bucket = aws_s3_bucket.web.id
  policy = data.aws_iam_policy_document.web.json
}

resource "aws_cloudfront_response_headers_policy" "web" {
  name = "${var.name}-web"
  security_headers_config {
    content_security_policy {
      # connect-src names this deployment's API and nothing else: a link naming another API
      # cannot make the browser send it a password, a token or a recording.
      content_security_policy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self' ${local.api_origin}; media-src 'self' blob:; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
      override                = true
    }
    strict_transport_security {
      access_control_max_age_sec = 63072000
      include_subdomains         = true
      preload                    = true
      override                   = true
    }
    content_type_options {
      override = true
    }
    frame_options {
      frame_option = "DENY"
      override     = true
    }
    referrer_policy {
      referrer_policy = "no-referrer"
      override        = true
    }
  }
}

resource "aws_cloudfront_distribution" "web" {
  # checkov:skip=CKV_AWS_68:A static page with no server-side logic and no PHI; the API behind it has its own throttling and authentication.
  # checkov:skip=CKV2_AWS_47:No WAF (see CKV_AWS_68): the page runs no server code that Log4j-style payloads could reach.
  # checkov:skip=CKV_AWS_86:Access logs of a public static page hold only visitors' addresses; enable them with your own log bucket if your policy asks.
  # checkov:skip=CKV_AWS_310:One origin: the bucket is regional and highly available; a failover group adds a second bucket to keep in sync.
  # checkov:skip=CKV_AWS_374:The page is for clinics anywhere; restrict geography at your CDN if your policy asks.
  # checkov:skip=CKV_AWS_174:The default *.cloudfront.net certificate; attach your domain's ACM certificate (minimum TLSv1.2_2021) for production.
  # checkov:skip=CKV2_AWS_42:See CKV_AWS_174: a custom certificate comes with the operator's domain.
  enabled             = true
  default_root_object = "index.html"
  price_class         = "PriceClass_100"
  http_version        = "http2and3"

  origin {
    domain_name              = aws_s3_bucket.web.bucket_regional_domain_name
    origin_id                = "web"
    origin_access_control_id = aws_cloudfront_origin_access_control.web.id
  }

  default_cache_behavior {
    target_origin_id           = "web"
    viewer_protocol_policy     = "redirect-to-https"
    allowed_methods            = ["GET", "HEAD"]
    cached_methods             = ["GET", "HEAD"]
    compress                   = true
    cache_policy_id            = "658327ea-f89d-4fab-a63d-7e88639e58f6" # Managed-CachingOptimized
    response_headers_policy_id = aws_cloudfront_response_headers_policy.web.id
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }

  viewer_certificate {
    cloudfront_default_certificate = true
  }
}

locals {
  files = {
    "index.html" = "text/html; charset=utf-8"
    "app.js"     = "text/javascript; charset=utf-8"
    "app.css"    = "text/css; charset=utf-8"
  }
}

resource "aws_s3_object" "page" {
  for_each      = local.files
  bucket        = aws_s3_bucket.web.id
  key           = each.key
  source        = "${var.web_dir}/${each.key}"
  source_hash   = filemd5("${var.web_dir}/${each.key}")
  content_type  = each.value
  cache_control = "no-cache"
}

resource "aws_s3_object" "config" {
  bucket        = aws_s3_bucket.web.id
  key           = "config.js"
  content       = "window.__MMT_CONFIG = ${jsonencode({ API_BASE_URL = var.api_base_url })};\n"
  content_type  = "text/javascript; charset=utf-8"
  cache_control = "no-cache"
}
