package redis

// Internals exposed to the external tests in package redis_test.
var (
	ScriptSHA256 = scriptSHA256
)
