package handlers

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// Request is one routed event, as a handler sees it.
type Request struct {
	User   string // the sender's user id (the token's sub)
	Socket string // the sending socket's id
	Args   any    // ARGS as decoded from JSON: map[string]any, []any, string, float64, bool or nil
}

// Handler serves one router event. It returns the acknowledgement payload on
// success; on failure an *Error for the client, or any other error, which is
// reported to the client as CodeInternal.
type Handler func(ctx context.Context, req Request) (any, error)

// Deps are what the handlers close over. Now and NewID are injected so that
// table tests are deterministic.
type Deps struct {
	Dispatcher Dispatcher
	Now        func() time.Time
	NewID      func() string
}

// Registry maps router event names to handlers.
type Registry struct {
	handlers map[string]Handler
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{handlers: make(map[string]Handler)}
}

// Add registers h under name. A duplicate name is a programming error caught
// at start-up, hence the panic.
func (r *Registry) Add(name string, h Handler) {
	if _, dup := r.handlers[name]; dup {
		panic(fmt.Sprintf("handlers: event %q registered twice", name))
	}
	r.handlers[name] = h
}

// Lookup returns the handler registered under name.
func (r *Registry) Lookup(name string) (Handler, bool) {
	h, ok := r.handlers[name]
	return h, ok
}

// Names lists the registered event names, sorted.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.handlers))
	for n := range r.handlers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Register is the one table of router events.
func Register(r *Registry, d Deps) {
	r.Add(EventSendMessage, SendMessage(d))
	r.Add(EventPostUpdated, PostUpdated(d))
}
