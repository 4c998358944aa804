"""DynamoDB through LocalStack's own provider, backed by the DynamoDB Local that
install.sh wired in from npm (nothing is downloaded at run time)."""

from __future__ import annotations

import uuid

import psutil
import pytest

from support import LOCAL, pid_from


def test_table_with_gsi_and_conditional_put(dynamodb_client):
    table = f"flashsale-test-{uuid.uuid4().hex[:8]}"
    dynamodb_client.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sku", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-sku",
                "KeySchema": [{"AttributeName": "sku", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    try:
        item = {"pk": {"S": "order-1"}, "sku": {"S": "sku-1"}}
        dynamodb_client.put_item(TableName=table, Item=item, ConditionExpression="attribute_not_exists(pk)")

        with pytest.raises(dynamodb_client.exceptions.ConditionalCheckFailedException):
            dynamodb_client.put_item(
                TableName=table,
                Item={"pk": {"S": "order-1"}, "sku": {"S": "sku-2"}},
                ConditionExpression="attribute_not_exists(pk)",
            )

        found = dynamodb_client.query(
            TableName=table,
            IndexName="by-sku",
            KeyConditionExpression="sku = :sku",
            ExpressionAttributeValues={":sku": {"S": "sku-1"}},
        )["Items"]
        assert found == [item]
    finally:
        dynamodb_client.delete_table(TableName=table)


def test_dynamodb_local_runs_from_the_installed_jar(dynamodb_client):
    dynamodb_client.list_tables()  # makes sure DynamoDB Local has started

    children = psutil.Process(pid_from("localstack")).children(recursive=True)
    java = [p for p in children if "DynamoDBLocal.jar" in " ".join(p.cmdline())]
    assert len(java) == 1
    cmdline = " ".join(java[0].cmdline())
    assert str(LOCAL / "localstack" / "var" / "lib" / "localstack" / "lib" / "dynamodb-local" / "2") in cmdline
