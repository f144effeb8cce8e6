"""`python -m bench`: cold start, warm latency, DynamoDB capacity, layer size and memory against the floor."""
