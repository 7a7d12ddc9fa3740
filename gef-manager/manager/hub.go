package manager

import "sync"

// hub wakes the held polls of nodes when there is news for them: a job they
// could run, or a job they must stop. A wake is never lost: each node's
// channel keeps one pending wake until the node next waits.
type hub struct {
	mu     sync.Mutex
	nodes  map[string]chan struct{}
	closed chan struct{}
	once   sync.Once
}

func newHub() *hub {
	return &hub{nodes: map[string]chan struct{}{}, closed: make(chan struct{})}
}

func (h *hub) channel(node string) chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch, ok := h.nodes[node]
	if !ok {
		ch = make(chan struct{}, 1)
		h.nodes[node] = ch
	}
	return ch
}

// wake nudges the named nodes.
func (h *hub) wake(nodes ...string) {
	for _, n := range nodes {
		select {
		case h.channel(n) <- struct{}{}:
		default: // already pending
		}
	}
}

// wakeAll nudges every node that has polled.
func (h *hub) wakeAll() {
	h.mu.Lock()
	names := make([]string, 0, len(h.nodes))
	for n := range h.nodes {
		names = append(names, n)
	}
	h.mu.Unlock()
	h.wake(names...)
}

// closeAll releases every held poll for good, at shutdown.
func (h *hub) closeAll() { h.once.Do(func() { close(h.closed) }) }
