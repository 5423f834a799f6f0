package upstream

// The retry budget, Envoy's defaults (retry_budget: budget_percent 20,
// min_retry_concurrency 3): the requests of an upstream that a node has
// already received and that are being sent again (after a 502, 503 or 504,
// or a failure once the request was written) are at most a fifth of the
// upstream's requests in flight, and never fewer than three. When every
// node is overloaded and answers 503, retries would double the load that
// overloaded them; within the budget, a retry still hides one bad node
// from clients.
const (
	retryBudgetMin     = 3
	retryBudgetDivisor = 5 // a fifth: 20%
)

// TryRetry takes a place in the retry budget for a request that a node of
// u has received and that is to be sent to another; false when the budget
// is spent (the caller answers with what it has). A true must be matched
// by one EndRetry when the request ends, however many more nodes it tries.
// A request whose connection failed before it was written is not a retry
// in this sense: it reached no backend, so the caller sends it on without
// asking.
func (u *Upstream) TryRetry() bool {
	var inFlight int64
	for _, n := range u.nodes {
		inFlight += n.inFlight.Load()
	}
	budget := max(retryBudgetMin, inFlight/retryBudgetDivisor)
	for {
		cur := u.retrying.Load()
		if cur >= budget {
			u.budgetDenied.Add(1)
			return false
		}
		if u.retrying.CompareAndSwap(cur, cur+1) {
			return true
		}
	}
}

// EndRetry gives back the place TryRetry took.
func (u *Upstream) EndRetry() { u.retrying.Add(-1) }

// RetriesDenied is how many retries the budget refused since u was built.
func (u *Upstream) RetriesDenied() uint64 { return u.budgetDenied.Load() }
