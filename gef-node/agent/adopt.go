package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/volumes"
)

// An agent that is killed leaves its containers running, its jobs'
// directories and its outbox. The next run takes them up before its first
// poll: it finds its containers by their labels, asks the manager for each
// one's assignment, and carries on with those the manager still gives it,
// from wherever they are: running, exited while no agent watched, half
// staged, or finished with the final report still to deliver. It removes
// the containers and directories of jobs the manager no longer gives it.

// ownLabels select the containers this node made with this work directory.
func (a *Agent) ownLabels() map[string]string {
	return map[string]string{LabelNode: a.cfg.Name, LabelInstance: a.instance}
}

// instanceID reads the work directory's id, making one the first time.
func instanceID(workDir string) (string, error) {
	path := filepath.Join(workDir, "instance")
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("agent: instance id: %w", err)
	}
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return "", fmt.Errorf("agent: instance id: %w", err)
	}
	s := hex.EncodeToString(id)
	if err := writeFileSynced(path, []byte(s+"\n")); err != nil {
		return "", fmt.Errorf("agent: instance id: %w", err)
	}
	return s, nil
}

// reconcileEvery is how often containers no task tracks are looked for.
const reconcileEvery = time.Minute

// adopt takes up what an earlier run of the agent left. It runs before the
// first poll, so the poll lists the adopted jobs and the manager keeps
// them this node's.
func (a *Agent) adopt(ctx context.Context) error {
	left, err := a.rt.Containers(ctx, a.ownLabels())
	if err != nil {
		return fmt.Errorf("agent: list containers: %w", err)
	}
	keep := map[string]bool{}
	for _, c := range left {
		id, attempt := c.Labels[LabelJob], 0
		attempt, _ = strconv.Atoi(c.Labels[LabelAttempt])
		log := a.log.With("job", id, "attempt", attempt, "container", c.ID)
		job, err := a.assignment(ctx, id)
		if err != nil && retryable(err) {
			return err // ctx ended
		}
		a.mu.Lock()
		_, dup := a.tasks[id]
		a.mu.Unlock()
		if err != nil || job.Attempt != attempt || dup {
			log.Warn("removing a container the manager no longer gives this node", "why", cmpErr(err, job.Attempt))
			if err := a.rt.Remove(ctx, c.ID); err != nil {
				return fmt.Errorf("agent: remove container: %w", err)
			}
			continue
		}
		t := newTask(a, job)
		c := c
		t.adopted, t.container = &c, c.ID
		if p, err := t.loadProgress(); err == nil {
			// Chunks not yet counted as shipped are read again.
			a.outbox.dropLogs(id, attempt, p.Seq)
		}
		keep[filepath.Base(t.dir)] = true
		log.Info("adopting a job an earlier run of the agent left", "running", c.Running, "exit_code", c.ExitCode)
		a.mu.Lock()
		a.startLocked(t)
		a.mu.Unlock()
	}
	dirs, err := os.ReadDir(filepath.Join(a.cfg.WorkDir, "jobs"))
	if err != nil {
		return fmt.Errorf("agent: work dir: %w", err)
	}
	for _, d := range dirs {
		if keep[d.Name()] {
			continue
		}
		// No container: the job never started, or finished and was
		// reported; its manager has been or will be told by the poll.
		if err := volumes.RemoveAll(filepath.Join(a.cfg.WorkDir, "jobs", d.Name())); err != nil {
			a.log.Warn("removing a job directory left by an earlier run", "dir", d.Name(), "err", err)
		}
	}
	return nil
}

func cmpErr(err error, attempt int) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("the job is at attempt %d now", attempt)
}

// assignment asks the manager for a held job's assignment, waiting while
// the manager cannot be reached.
func (a *Agent) assignment(ctx context.Context, id string) (gef.Assignment, error) {
	b := newBackoff(200*time.Millisecond, 5*time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, callLimit)
		job, err := a.mgr.Assignment(cctx, id)
		cancel()
		if err == nil || !retryable(err) {
			return job, err
		}
		a.log.Warn("asking the manager for an assignment; retrying", "job", id, "err", err)
		if !b.wait(ctx) {
			return gef.Assignment{}, ctx.Err()
		}
	}
}

// adoptedSpec is what the task needs to know of a container it did not
// make: its limits.
func (t *task) adoptedSpec() spec {
	s := spec{timeout: t.timeout()}
	s.MemoryBytes = t.a.cfg.DefaultMemoryBytes
	if m := t.job.Resources.MemoryBytes; m > 0 {
		s.MemoryBytes = min(m, t.a.cfg.MaxMemoryBytes)
	}
	return s
}

// awaitFinal waits for the manager to take the final report, then removes
// the container and the outputs: they are stored and recorded by then. An
// agent that stops first leaves them to its next run.
func (t *task) awaitFinal(ctx context.Context, done <-chan error, log *slog.Logger) {
	select {
	case err := <-done:
		if err != nil {
			log.Warn("the manager refused the final report", "err", err)
		}
		t.cleanup(ctx, log)
	case <-t.a.detached:
		log.Info("leaving the job's final report for the next run of the agent")
	}
}

// reconcileLoop removes, now and then, containers of this node that no
// task tracks: a task that died before its cleanup, or a container from a
// run that was not adopted.
func (a *Agent) reconcileLoop(ctx context.Context) {
	tick := time.NewTicker(reconcileEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := a.reconcile(ctx); err != nil && ctx.Err() == nil {
				a.log.Warn("reconciling containers", "err", err)
			}
		}
	}
}

func (a *Agent) reconcile(ctx context.Context) error {
	cs, err := a.rt.Containers(ctx, a.ownLabels())
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range cs {
		attempt, _ := strconv.Atoi(c.Labels[LabelAttempt])
		a.mu.Lock()
		t, ok := a.tasks[c.Labels[LabelJob]]
		tracked := ok && t.job.Attempt == attempt
		a.mu.Unlock()
		if tracked {
			continue
		}
		a.log.Warn("removing a container no task tracks", "container", c.ID, "job", c.Labels[LabelJob], "attempt", attempt)
		if err := a.rt.Remove(ctx, c.ID); err != nil && !errors.Is(err, gef.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
