package handlers

import "fmt"

// Code is an error code of the wire contract. Clients switch on it, so the
// set is closed: add one only together with the contract.
type Code string

// The error codes a client can receive.
const (
	CodeUnknownEvent Code = "unknown_event"
	CodeInvalidArgs  Code = "invalid_args"
	CodeRateLimited  Code = "rate_limited"
	CodeInternal     Code = "internal"
)

// Error is a user-safe error: its Message is sent to the client as it is.
// Any other error a handler returns is logged and reported as CodeInternal,
// so internal details never reach clients.
type Error struct {
	Code    Code
	Message string
	// Limit is the size or content limit the event broke, for the refusal
	// counter; zero for every other error.
	Limit Limit
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

func invalidArgs(format string, args ...any) *Error {
	return &Error{Code: CodeInvalidArgs, Message: fmt.Sprintf(format, args...)}
}

// limitExceeded is the invalid_args answer to an argument past one of the
// limits of limits.go.
func limitExceeded(arg, reason, format string, args ...any) *Error {
	e := invalidArgs(format, args...)
	e.Limit = Limit{Arg: arg, Reason: reason}
	return e
}
