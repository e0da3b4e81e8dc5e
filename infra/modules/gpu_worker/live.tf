# Live dictation on the worker: the decoder of a session stays with its connection for the
# whole dictation, which a Lambda function cannot hold, so `GET /v1/stream` is served by the
# worker itself behind an Application Load Balancer (WebSocket support built in), over TLS,
# with the same token verification as every other route (the worker has the API's verifying
# keys). Sticky sessions keep a reconnecting page on the task that knows it; the ALB's idle
# timeout is longer than the worker's ping interval.

locals {
  live = var.live_dictation != null
}

resource "aws_security_group" "live" {
  count       = local.live ? 1 : 0
  name        = "${var.name}-live"
  description = "Live dictation load balancer: HTTPS in from the allowed networks, to the workers on 8080"
  vpc_id      = var.vpc_id

  ingress {
    description = "HTTPS (WebSocket) from clinics"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = var.live_dictation.allowed_cidrs
  }

  egress {
    description     = "To the workers' HTTP port"
    from_port       = 8080
    to_port         = 8080
    protocol        = "tcp"
    security_groups = [aws_security_group.worker.id]
  }
}

resource "aws_security_group_rule" "worker_from_live" {
  count                    = local.live ? 1 : 0
  description              = "Live dictation from the load balancer"
  type                     = "ingress"
  from_port                = 8080
  to_port                  = 8080
  protocol                 = "tcp"
  security_group_id        = aws_security_group.worker.id
  source_security_group_id = aws_security_group.live[0].id
}

resource "aws_lb" "live" {
  # checkov:skip=CKV_AWS_91:The worker logs every session (start, end, close code, audio seconds) with its correlation id; the balancer's logs would add client addresses and nothing about the dictation.
  # checkov:skip=CKV2_AWS_28:The only route is the WebSocket upgrade, authenticated by its first message and rate-limited by the worker; a WAF sees no request body it could judge.
  # checkov:skip=CKV2_AWS_76:See CKV2_AWS_28.
  count                      = local.live ? 1 : 0
  name                       = substr("${var.name}-live", 0, 32)
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = var.live_dictation.public_subnet_ids
  security_groups            = [aws_security_group.live[0].id]
  idle_timeout               = var.live_dictation.idle_timeout_secs
  drop_invalid_header_fields = true
  enable_deletion_protection = true
}

resource "aws_lb_target_group" "live" {
  # checkov:skip=CKV_AWS_378:TLS ends at the balancer; the hop to the worker stays inside the VPC, in security groups that admit only the balancer.
  count       = local.live ? 1 : 0
  name        = substr("${var.name}-live", 0, 32)
  port        = 8080
  protocol    = "HTTP"
  target_type = "ip"
  vpc_id      = var.vpc_id
  # A stopping task saves its sessions and closes them (1012) within SHUTDOWN_GRACE_SECS.
  deregistration_delay = 60

  health_check {
    path                = "/health/ready"
    matcher             = "200"
    interval            = 15
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  stickiness {
    type            = "lb_cookie"
    enabled         = true
    cookie_duration = 3600
  }
}

resource "aws_lb_listener" "live" {
  count             = local.live ? 1 : 0
  load_balancer_arn = aws_lb.live[0].arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.live_dictation.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.live[0].arn
  }
}
