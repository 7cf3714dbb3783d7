package namespaces

// Observer is told what happens, for metrics. Implemented in package server.
type Observer interface {
	// EventHandled counts a routed event by router event name ("unknown" for
	// unregistered names) and result ("ok" or an error code).
	EventHandled(event, result string)
	// Delivered counts one delivery (one room emit) of event.
	Delivered(event string)
	// AuthFailed counts a refused connection by reason.
	AuthFailed(reason string)
	// LimitExceeded counts a refusal for an argument past a size or content
	// limit: arg and reason are handlers' Arg and Reason constants.
	LimitExceeded(arg, reason string)
	// FloodDisconnected counts a socket disconnected for flooding past the
	// rate limit.
	FloodDisconnected()
}

type nopObserver struct{}

func (nopObserver) EventHandled(string, string)  {}
func (nopObserver) Delivered(string)             {}
func (nopObserver) AuthFailed(string)            {}
func (nopObserver) LimitExceeded(string, string) {}
func (nopObserver) FloodDisconnected()           {}
