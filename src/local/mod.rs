//! A local Bedrock Runtime + STS server for offline tests.
