"""Lambda event payloads of each kind, shaped as the AWS documentation's examples.

API Gateway HTTP API (payload format 2.0) and Function URLs:
https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html
https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html
REST API (payload format 1.0):
https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-lambda-proxy-integrations.html
SQS and SNS: https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html, .../with-sns.html
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

ACCOUNT = "123456789012"


def http_v2(path: str, body: Any = None, *, method: str = "POST", headers: dict[str, str] | None = None,
            base64_body: bool = False) -> dict[str, Any]:  # fmt: skip
    """An HTTP API (payload 2.0) request, stage ``$default``."""
    text = "" if body is None else json.dumps(body)
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "host": "abc123.execute-api.us-east-1.amazonaws.com",
            "user-agent": "curl/8.5.0",
            **(headers or {}),
        },
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "192.0.2.1",
                "userAgent": "curl/8.5.0",
            },
            "requestId": f"JKJaXmPLvHcESHA={uuid.uuid4().hex[:6]}",
            "routeKey": "$default",
            "stage": "$default",
            "time": "12/Mar/2026:19:03:58 +0000",
            "timeEpoch": 1773342238000,
        },
        "body": base64.b64encode(text.encode()).decode() if base64_body else text,
        "isBase64Encoded": base64_body,
    }


def function_url(
    path: str, body: Any = None, *, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """A Function URL request (payload 2.0, domain ``<id>.lambda-url.<region>.on.aws``)."""
    event = http_v2(path, body, headers=headers)
    domain = "a1b2c3d4e5f6.lambda-url.us-east-1.on.aws"
    event["headers"]["host"] = domain
    event["requestContext"].update(apiId="a1b2c3d4e5f6", domainName=domain, domainPrefix="a1b2c3d4e5f6",
                                   authorizer={"iam": None})  # fmt: skip
    return event


def rest_v1(path: str, body: Any = None, *, method: str = "POST", headers: dict[str, str] | None = None,
            stage: str = "prod") -> dict[str, Any]:  # fmt: skip
    """A REST API proxy request (payload 1.0), resource ``/{proxy+}``."""
    all_headers = {"Content-Type": "application/json", "Host": "abc123.execute-api.us-east-1.amazonaws.com",
                   **(headers or {})}  # fmt: skip
    return {
        "version": "1.0",
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {k: [v] for k, v in all_headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "abc123",
            "httpMethod": method,
            "identity": {"sourceIp": "192.0.2.1", "userAgent": "curl/8.5.0"},
            "path": f"/{stage}{path}",
            "protocol": "HTTP/1.1",
            "requestId": f"c6af9ac6-7b61-11e6-9a41-{uuid.uuid4().hex[:12]}",
            "resourcePath": "/{proxy+}",
            "stage": stage,
        },
        "body": None if body is None else json.dumps(body),
        "isBase64Encoded": False,
    }


def sqs(bodies: list[str], *, receive_count: int = 1) -> dict[str, Any]:
    """An SQS batch: one record per body."""
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": f"AQEB{uuid.uuid4().hex}",
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": str(receive_count),
                    "SentTimestamp": "1773342238000",
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": "1773342238010",
                },
                "messageAttributes": {},
                "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:us-east-1:{ACCOUNT}:shop-orders-placed-mailer",
                "awsRegion": "us-east-1",
            }
            for body in bodies
        ]
    }


def sns_notification(message: str) -> dict[str, Any]:
    """The SNS notification JSON (what a non-raw SQS subscription delivers as the body)."""
    return {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": f"arn:aws:sns:us-east-1:{ACCOUNT}:shop-Orders-placed",
        "Message": message,
        "Timestamp": "2026-03-12T19:03:58.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
        "MessageAttributes": {},
    }


def sns(message: str) -> dict[str, Any]:
    """An SNS invocation (one record)."""
    notification = sns_notification(message)
    return {
        "Records": [
            {
                "EventVersion": "1.0",
                "EventSubscriptionArn": f"{notification['TopicArn']}:2bcfbf39-05c3-41de-beaa-fcfcc21c8f55",
                "EventSource": "aws:sns",
                "Sns": {**notification, "Subject": None},
            }
        ]
    }
