"""The example API client the files in events/ carry: public, for local use only, registered by `make run`
and by the tests against DynamoDB Local; never a secret anywhere."""

EXAMPLE_API_KEY = "cc_example01_EventFilesOnlyThisKeyIsNotASecretAnywhere00"
EXAMPLE_CLIENT_ID = "example01"
EXAMPLE_PREFIX = "https://booking.example.com/calendar/"
