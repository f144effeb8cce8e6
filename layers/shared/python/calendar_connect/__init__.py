"""Calendar Connect: the code both Lambda functions share."""
