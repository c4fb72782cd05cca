// The rating page: wires the session state machine, the API client and the draft/outbox
// storage to the DOM. Each task's view is built once; actions update it in place so the text
// box keeps its focus and KaTeX runs once per task.
import { ApiClient, ApiError, type Me, type QueueTask, type SubmitPayload } from "./api";
import { commandForKey, isTypingTarget, KEY_HELP, type Command } from "./keys";
import { renderMathText } from "./math";
import {
  currentStep,
  isFinished,
  RATING_NAMES,
  reduce,
  sessionRestore,
  sessionStart,
  Stopwatch,
  submitFields,
  validateSubmit,
  visibleSteps,
  type Action,
  type Rating,
  type SessionState,
} from "./session";
import { DraftStore, Outbox, type FlushOutcome, type KeyValueStore } from "./storage";
import { RefusedStore, renderRefused } from "./refused";
import { holdLost } from "./hold";

const HEARTBEAT_MS = 60_000;
const EMPTY_POLL_MS = 30_000;
const DRAFT_SAVE_MS = 5_000;

const RATING_CLASS: Record<Rating, string> = { [-1]: "bad", 0: "okay", 1: "great" };

interface Current {
  task: QueueTask;
  session: SessionState;
  stopwatch: Stopwatch;
  startedAt: string;
  idempotencyKey: string;
  view: TaskView;
}

interface TaskView {
  root: HTMLElement;
  steps: HTMLLIElement[];
  remaining: HTMLElement;
  finish: HTMLElement;
  finishTitle: HTMLElement;
  finishDetail: HTMLElement;
  correction: HTMLElement;
  correctionBox: HTMLTextAreaElement;
  submitButton: HTMLButtonElement;
  timer: HTMLElement;
  ratingButtons: HTMLButtonElement[];
  progress: HTMLElement;
}

/** RFC 4122 v4 from getRandomValues: randomUUID is missing outside secure contexts. */
export function uuid4(): string {
  if (typeof crypto.randomUUID === "function") {
    return crypto.randomUUID();
  }
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") {
      node.className = v;
    } else {
      node.setAttribute(k, v);
    }
  }
  node.append(...children);
  return node;
}

function formatDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  const m = Math.floor(s / 60);
  const h = Math.floor(m / 60);
  const mm = String(m % 60).padStart(h ? 2 : 1, "0");
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

export interface AppOptions {
  root: HTMLElement;
  username: string;
  csrfToken: string;
  storage: KeyValueStore;
}

export class App {
  private readonly api: ApiClient;
  private readonly drafts: DraftStore;
  private readonly outbox: Outbox;
  private readonly refused: RefusedStore;
  private readonly root: HTMLElement;
  private current: Current | null = null;
  private prefetched: QueueTask | null = null;
  private prefetching: Promise<void> | null = null;
  private outboxTimer: number | undefined;
  private emptyTimer: number | undefined;
  private reasonDialog!: HTMLDialogElement;
  private helpDialog!: HTMLDialogElement;
  private notice!: HTMLElement;
  private refusedPanel!: HTMLElement;

  constructor(opts: AppOptions) {
    this.root = opts.root;
    this.api = new ApiClient(() => opts.csrfToken);
    this.drafts = new DraftStore(opts.storage, opts.username);
    this.outbox = new Outbox(opts.storage, opts.username);
    this.refused = new RefusedStore(opts.storage, opts.username);
  }

  // --- start-up ---------------------------------------------------------------------------

  async start(): Promise<void> {
    this.buildChrome();
    document.addEventListener("keydown", (e) => this.onKeyDown(e));
    document.addEventListener("visibilitychange", () => this.onVisibility());
    window.addEventListener("pagehide", () => this.saveDraft());
    window.addEventListener("online", () => void this.flushOutbox(true));
    // Another tab submitted a task: if it is the one on screen here, put it away at once.
    window.addEventListener("storage", (e) => {
      const cur = this.current;
      if (e.key === this.drafts.submittedKey && cur && this.drafts.isSubmitted(cur.task.id)) {
        void this.putAway(cur, `You submitted task ${cur.task.id} in another tab, so it was put away here.`);
      }
    });
    window.setInterval(() => void this.heartbeat(), HEARTBEAT_MS);
    window.setInterval(() => this.saveDraft(), DRAFT_SAVE_MS);
    window.setInterval(() => this.tick(), 1000);

    this.drafts.prune(Date.now(), new Set([...this.outbox.taskIds(), ...this.refused.taskIds()]));
    this.showRefused();
    void this.refreshMe();
    // A page load is a natural moment to retry: don't wait out the backoff of a past session.
    void this.flushOutbox(true);
    await this.openFirstTask();
  }

  private buildChrome(): void {
    this.notice = el("div", { class: "notice", role: "alert", hidden: "" });
    this.reasonDialog = el("dialog", { class: "dialog", "aria-labelledby": "reason-title" });
    this.helpDialog = el("dialog", { class: "dialog", "aria-labelledby": "help-title" });
    const rows = KEY_HELP.map(([k, what]) => el("tr", {}, el("th", { scope: "row" }, el("kbd", {}, k)), el("td", {}, what)));
    const close = el("button", { type: "button", class: "btn" }, "Close");
    close.addEventListener("click", () => this.helpDialog.close());
    this.helpDialog.append(
      el("h2", { id: "help-title" }, "Keyboard shortcuts"),
      el("table", { class: "keys" }, el("tbody", {}, ...rows)),
      el("div", { class: "dialog-actions" }, close),
    );
    document.body.append(this.reasonDialog, this.helpDialog);
    document.getElementById("help-button")?.addEventListener("click", () => this.toggleHelp());
    this.refusedPanel = el("section", { class: "refused", "aria-label": "Labels not saved", hidden: "" });
    this.root.before(this.notice, this.refusedPanel);
  }

  /** After a reload: the task that was on screen (from its draft), else the queue's next. */
  private async openFirstTask(): Promise<void> {
    const id = this.drafts.currentTaskId;
    const draft = id === null ? null : this.drafts.load(id);
    if (draft && !this.outbox.taskIds().includes(draft.task.id)) {
      this.show(draft.task);
      const cur = this.current;
      // Check the hold is still ours; if not, the server says whether work on it is kept.
      this.api.heartbeat(draft.task.id).catch((err: unknown) => {
        if (cur) {
          void this.onHoldLost(cur, err);
        }
      });
      void this.prefetch();
      return;
    }
    await this.advance();
  }

  // --- tasks ------------------------------------------------------------------------------

  private busyIds(): number[] {
    const ids = this.outbox.taskIds();
    if (this.current) {
      ids.push(this.current.task.id);
    }
    return ids;
  }

  /**
   * Shows the prefetched task at once, or asks the queue; then prefetches the one after.
   * `settled` is the submit in flight: the server allows two live leases, so the prefetch
   * waits until the submitted task's lease is released.
   */
  private async advance(settled?: Promise<void>): Promise<void> {
    window.clearTimeout(this.emptyTimer);
    if (this.prefetching) {
      await this.prefetching;
    }
    let task = this.prefetched;
    this.prefetched = null;
    if (!task) {
      this.showLoading();
      try {
        task = await this.api.next(this.busyIds());
      } catch (err) {
        this.showError(err);
        return;
      }
    }
    if (!task) {
      this.showEmpty();
      return;
    }
    this.show(task);
    void (async () => {
      await settled;
      await this.prefetch();
    })();
  }

  private prefetch(): Promise<void> {
    if (!this.prefetching) {
      this.prefetching = (async () => {
        try {
          const next = await this.api.next(this.busyIds());
          this.prefetched = next && next.id !== this.current?.task.id ? next : null;
        } catch {
          this.prefetched = null; // not fatal: the next advance() asks again
        }
      })().finally(() => {
        this.prefetching = null;
      });
    }
    return this.prefetching;
  }

  private show(task: QueueTask): void {
    const draft = this.drafts.load(task.id);
    const restored = draft ? sessionRestore(draft.session, task.id, task.steps.length) : null;
    let session: SessionState;
    try {
      session = restored ?? sessionStart(task.id, task.steps.length);
    } catch (err) {
      this.showError(err);
      return;
    }
    const stopwatch = new Stopwatch(restored && draft ? draft.elapsedMs : 0);
    if (document.visibilityState !== "hidden") {
      stopwatch.start(performance.now());
    }
    this.current = {
      task,
      session,
      stopwatch,
      startedAt: (restored && draft?.startedAt) || new Date().toISOString(),
      idempotencyKey: (restored && draft?.idempotencyKey) || uuid4(),
      view: this.buildTaskView(task),
    };
    this.drafts.currentTaskId = task.id;
    this.root.replaceChildren(this.current.view.root);
    this.root.dataset.state = "task";
    this.root.dataset.taskId = String(task.id);
    this.update();
    this.saveDraft();
    if (restored && restored.ratings.length) {
      this.say("info", "Restored your unfinished work on this task.");
    } else {
      this.say(null);
    }
    window.scrollTo({ top: 0 });
  }

  private buildTaskView(task: QueueTask): TaskView {
    const steps = task.steps.map((text, i) =>
      el(
        "li",
        { class: "step", "data-index": String(i), hidden: "" },
        el("div", { class: "step-head" }, el("span", { class: "step-num" }, `Step ${i + 1}`), el("span", { class: "step-chips" })),
        this.mathBlock("step-text", text),
      ),
    );
    const remaining = el("p", { class: "remaining" });
    const button = (label: string, key: string, cls: string, onClick: () => void, title = label) => {
      // The name is the label alone; the key is announced through aria-keyshortcuts.
      const b = el(
        "button",
        { type: "button", class: `btn ${cls}`, title: `${title} (${key})`, "aria-label": label, "aria-keyshortcuts": key },
        label,
        el("kbd", { "aria-hidden": "true" }, key),
      );
      b.addEventListener("click", () => {
        onClick();
        b.blur(); // keep keyboard focus on the page, not the button
      });
      return b;
    };
    const ratingButtons = ([-1, 0, 1] as Rating[]).map((r) =>
      button(RATING_NAMES[r], r === -1 ? "1" : r === 0 ? "2" : "3", `rate rate-${RATING_CLASS[r]}`, () => this.dispatch({ type: "rate", rating: r })),
    );
    const controls = el(
      "div",
      { class: "controls", role: "toolbar", "aria-label": "Rate the highlighted step" },
      el("div", { class: "control-group" }, ...ratingButtons),
      el(
        "div",
        { class: "control-group secondary" },
        button("Flag", "F", "", () => this.dispatch({ type: "toggleFlag" }), "Flag the current step"),
        button("Undo", "⌫", "", () => this.dispatch({ type: "undo" }), "Undo the last action"),
        button("Give up", "G", "", () => this.askReason("give_up")),
        button("Bad problem", "B", "", () => this.askReason("bad_problem")),
      ),
    );

    const correctionBox = el("textarea", {
      id: "correction",
      rows: "3",
      placeholder: "Optional: how should this step read? (Ctrl+Enter submits, Esc leaves the box)",
    });
    correctionBox.addEventListener("input", () => {
      this.dispatch({ type: "setHumanCompletion", text: correctionBox.value }, false);
    });
    correctionBox.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        void this.submit();
      } else if (e.key === "Escape") {
        correctionBox.blur();
      }
    });
    const correction = el(
      "div",
      { class: "correction" },
      el("label", { for: "correction" }, "Corrected step ", el("span", { class: "muted" }, "(optional)")),
      correctionBox,
    );
    const submitButton = el(
      "button",
      { type: "button", class: "btn primary", id: "submit", "aria-keyshortcuts": "Enter" },
      "Submit",
      el("kbd", { "aria-hidden": "true" }, "Enter"),
    );
    submitButton.addEventListener("click", () => void this.submit());
    const skip = el("button", { type: "button", class: "btn link" }, "Skip this task");
    skip.addEventListener("click", () => void this.skip());
    const finishTitle = el("h2", { class: "finish-title" });
    const finishDetail = el("p", { class: "finish-detail" });
    const finish = el(
      "section",
      { class: "finish", hidden: "", "aria-live": "polite" },
      finishTitle,
      finishDetail,
      correction,
      el("div", { class: "finish-actions" }, submitButton, el("span", { class: "muted" }, "Backspace to undo")),
    );
    const timer = el("span", { class: "timer", title: "Time on this task (paused while the tab is hidden)" });
    const progress = el("span", { class: "progress" });
    const meta = el(
      "div",
      { class: "task-meta" },
      el("span", {}, `Task ${task.id}`),
      // Screening questions are announced; quality-control questions are not (they would stand out).
      task.screening ? el("span", { class: "badge" }, "Screening question") : "",
      progress,
      timer,
      skip,
    );
    const root = el(
      "article",
      { class: "task" },
      meta,
      el("section", { class: "problem", "aria-label": "Problem" }, el("h2", {}, "Problem"), this.mathBlock("problem-text", task.problem)),
      el(
        "section",
        { class: "answer", "aria-label": "Ground-truth answer" },
        el("h2", {}, "Ground-truth answer"),
        this.mathBlock("answer-text", task.ground_truth_answer),
      ),
      el("h2", { class: "steps-title" }, "Solution"),
      el("ol", { class: "steps" }, ...steps),
      remaining,
      finish,
      controls,
    );
    return {
      root,
      steps,
      remaining,
      finish,
      finishTitle,
      finishDetail,
      correction,
      correctionBox,
      submitButton,
      timer,
      ratingButtons,
      progress,
    };
  }

  private mathBlock(cls: string, text: string): HTMLElement {
    const div = el("div", { class: `math-text ${cls}` });
    div.innerHTML = renderMathText(text); // escaped text + KaTeX output only
    return div;
  }

  // --- actions ----------------------------------------------------------------------------

  private dispatch(action: Action, render = true): void {
    const cur = this.current;
    if (!cur) {
      return;
    }
    const next = reduce(cur.session, action);
    if (next === cur.session) {
      return;
    }
    cur.session = next;
    this.saveDraft();
    if (render) {
      this.update();
    }
  }

  private update(): void {
    const cur = this.current;
    if (!cur) {
      return;
    }
    const { session: s, view: v } = cur;
    const finished = isFinished(s);
    const active = currentStep(s);
    const shown = visibleSteps(s);
    v.steps.forEach((li, i) => {
      li.hidden = i >= Math.max(shown, 1);
      const rating = s.ratings[i];
      li.classList.toggle("current", !finished && i === active);
      for (const r of [-1, 0, 1] as Rating[]) {
        li.classList.toggle(`rated-${RATING_CLASS[r]}`, rating === r);
      }
      li.classList.toggle("flagged", s.flags[i] === true);
      const chips = li.querySelector(".step-chips")!;
      const parts: string[] = [];
      if (rating !== undefined) {
        parts.push(`<span class="chip chip-${RATING_CLASS[rating]}">${RATING_NAMES[rating]}</span>`);
      }
      if (s.flags[i]) {
        parts.push('<span class="chip chip-flag" title="Flagged">⚑ Flagged</span>');
      }
      chips.innerHTML = parts.join("");
      li.setAttribute("aria-current", !finished && i === active ? "step" : "false");
    });
    const hidden = s.stepCount - shown;
    v.remaining.textContent = !finished && hidden > 0 ? `${hidden} more step${hidden === 1 ? "" : "s"} after this one` : "";
    v.progress.textContent = `${s.ratings.length} / ${s.stepCount} rated`;
    v.ratingButtons.forEach((b) => (b.disabled = finished));

    v.finish.hidden = !finished;
    v.correction.hidden = s.finishReason !== "found_error";
    this.root.dataset.finish = s.finishReason ?? "";
    switch (s.finishReason) {
      case "found_error":
        v.finishTitle.textContent = `Found an error in step ${s.ratings.length}`;
        v.finishDetail.textContent = "You can write how the step should read, then submit.";
        break;
      case "solution":
        v.finishTitle.textContent = "Every step rated — no errors";
        v.finishDetail.textContent = "Submit to record the solution as correct.";
        break;
      case "give_up":
      case "bad_problem":
        v.finishTitle.textContent = s.finishReason === "give_up" ? "Giving up on this task" : "Reporting a bad problem";
        v.finishDetail.textContent = `Reason: ${s.finishNote}`;
        break;
      default:
        break;
    }
    if (v.correctionBox.value !== s.humanCompletion) {
      v.correctionBox.value = s.humanCompletion;
    }
    this.tick();
    const focusRow = v.steps[active];
    if (focusRow && !focusRow.hidden && typeof focusRow.scrollIntoView === "function") {
      focusRow.scrollIntoView({ block: "nearest" });
    }
    if (finished) {
      v.finish.scrollIntoView({ block: "nearest" });
    }
  }

  private tick(): void {
    this.renderSaveStatus();
    const cur = this.current;
    if (cur) {
      cur.view.timer.textContent = formatDuration(cur.stopwatch.elapsed(performance.now()));
    }
  }

  private onKeyDown(e: KeyboardEvent): void {
    // Focus can linger for a moment on a control of a dialog that just closed; keys typed then
    // belong to the page, not to the hidden box or button.
    const stale = inClosedDialog(e.target);
    if (e.defaultPrevented || (!stale && isTypingTarget(e.target))) {
      return;
    }
    if (this.reasonDialog.open || this.helpDialog.open) {
      if (e.key === "?" && this.helpDialog.open) {
        e.preventDefault();
        this.helpDialog.close();
      }
      return;
    }
    const cmd = commandForKey(e);
    // Enter on a focused button clicks it; don't also run the page's Enter.
    if (!cmd || (cmd.type === "submit" && !stale && (e.target as HTMLElement | null)?.tagName === "BUTTON")) {
      return;
    }
    e.preventDefault();
    this.run(cmd);
  }

  private run(cmd: Command): void {
    if (cmd.type === "help") {
      this.toggleHelp();
      return;
    }
    if (!this.current) {
      return;
    }
    switch (cmd.type) {
      case "rate":
        this.dispatch({ type: "rate", rating: cmd.rating });
        break;
      case "flag":
        this.dispatch({ type: "toggleFlag" });
        break;
      case "undo":
        this.dispatch({ type: "undo" });
        break;
      case "giveUp":
        this.askReason("give_up");
        break;
      case "badProblem":
        this.askReason("bad_problem");
        break;
      case "correct":
        if (this.current.session.finishReason === "found_error") {
          this.current.view.correctionBox.focus();
        }
        break;
      case "submit":
        void this.submit();
        break;
    }
  }

  private toggleHelp(): void {
    if (this.helpDialog.open) {
      this.helpDialog.close();
    } else {
      this.helpDialog.showModal();
    }
  }

  private askReason(reason: "give_up" | "bad_problem"): void {
    if (!this.current || this.current.session.finishReason === reason) {
      return;
    }
    const d = this.reasonDialog;
    const title = reason === "give_up" ? "Give up on this task" : "Report a bad problem";
    const hint =
      reason === "give_up"
        ? "Why are you stopping? (e.g. I can't follow step 4)"
        : "What is wrong with the problem? (e.g. the diagram is missing)";
    const box = el("textarea", { id: "reason", rows: "3", "aria-required": "true", placeholder: hint });
    const error = el("p", { class: "field-error", role: "alert" });
    const ok = el("button", { type: "submit", class: "btn primary" }, reason === "give_up" ? "Give up" : "Report");
    const cancel = el("button", { type: "button", class: "btn" }, "Cancel");
    const form = el(
      "form",
      { method: "dialog" },
      el("h2", { id: "reason-title" }, title),
      el("label", { for: "reason" }, "Reason (required)"),
      box,
      error,
      el("div", { class: "dialog-actions" }, cancel, ok),
    );
    const accept = (): boolean => {
      if (!box.value.trim()) {
        error.textContent = "Please give a reason.";
        box.focus();
        return false;
      }
      this.dispatch({ type: "finishEarly", reason, note: box.value });
      d.close();
      box.blur();
      return true;
    };
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      accept();
    });
    box.addEventListener("keydown", (e) => {
      if (d.open && e.key === "Enter" && (e.ctrlKey || e.metaKey || !e.shiftKey)) {
        e.preventDefault(); // Enter confirms; Shift+Enter for a new line
        accept();
      }
    });
    cancel.addEventListener("click", () => d.close());
    d.replaceChildren(form);
    d.showModal();
    box.focus();
  }

  private async submit(): Promise<void> {
    const cur = this.current;
    if (!cur) {
      return;
    }
    const fields = submitFields(cur.session);
    if (!fields) {
      this.say("info", "Rate the steps first: the task is not finished yet.");
      return;
    }
    const errors = validateSubmit(fields, cur.session.stepCount);
    if (Object.keys(errors).length) {
      this.say("error", Object.entries(errors).map(([f, m]) => `${f}: ${m.join(" ")}`).join("; "));
      return;
    }
    cur.stopwatch.pause(performance.now());
    const payload: SubmitPayload = {
      ...fields,
      idempotency_key: cur.idempotencyKey,
      total_time_ms: cur.stopwatch.elapsed(performance.now()),
      started_at: cur.startedAt,
    };
    // Persist before sending: from here on a reload or a dropped connection loses nothing.
    this.outbox.add(cur.task.id, payload, Date.now());
    this.saveDraft();
    this.current = null;
    this.drafts.currentTaskId = null;
    this.say(null);
    const flushing = this.flushOutbox(true);
    await this.advance(flushing);
    await flushing;
  }

  private async skip(): Promise<void> {
    const cur = this.current;
    if (!cur) {
      return;
    }
    if (cur.session.ratings.length && !window.confirm("Skip this task and discard your ratings?")) {
      return;
    }
    this.current = null;
    this.drafts.remove(cur.task.id);
    this.drafts.currentTaskId = null;
    try {
      await this.api.skip(cur.task.id);
    } catch {
      // The lease simply expires if the release does not get through.
    }
    await this.advance();
  }

  // --- background work --------------------------------------------------------------------

  private saveDraft(): void {
    const cur = this.current;
    if (!cur) {
      return;
    }
    try {
      this.drafts.save({
        task: cur.task,
        session: cur.session,
        elapsedMs: cur.stopwatch.elapsed(performance.now()),
        startedAt: cur.startedAt,
        idempotencyKey: cur.idempotencyKey,
        savedAt: Date.now(),
      });
    } catch {
      this.say("warn", "Your browser storage is full: work on this task is not being saved locally.");
    }
  }

  private onVisibility(): void {
    const cur = this.current;
    if (!cur) {
      return;
    }
    if (document.visibilityState === "hidden") {
      cur.stopwatch.pause(performance.now());
      this.saveDraft();
    } else {
      cur.stopwatch.start(performance.now());
      void this.heartbeat();
    }
  }

  private async heartbeat(): Promise<void> {
    const cur = this.current;
    if (cur) {
      try {
        await this.api.heartbeat(cur.task.id);
      } catch (err) {
        await this.onHoldLost(cur, err);
      }
    }
    const pre = this.prefetched;
    if (pre) {
      try {
        await this.api.heartbeat(pre.id);
      } catch (err) {
        // Not started yet: whatever the reason the hold is gone (404, or 409 taken back or
        // labeled elsewhere), fetch another instead.
        if (err instanceof ApiError && (err.status === 404 || err.status === 409) && this.prefetched === pre) {
          this.prefetched = null;
          void this.prefetch();
        }
      }
    }
  }

  /** A heartbeat found the hold on the task on screen gone: act on the server's reason. */
  private async onHoldLost(cur: Current, err: unknown): Promise<void> {
    const lost = holdLost(err, cur.task.id);
    if (!lost || this.current !== cur) {
      return;
    }
    if (lost.action === "drop") {
      await this.putAway(cur, lost.text);
    } else {
      this.say(lost.action === "lost" ? "error" : lost.level, lost.text);
    }
  }

  /** The task on screen was submitted already (here or elsewhere): drop its draft, go on. */
  private async putAway(cur: Current, text: string): Promise<void> {
    if (this.current !== cur) {
      return;
    }
    this.current = null;
    this.drafts.markSubmitted(cur.task.id);
    this.drafts.currentTaskId = null;
    await this.advance();
    this.say("info", text);
  }

  private async flushOutbox(force = false): Promise<void> {
    window.clearTimeout(this.outboxTimer);
    if (!this.outbox.entries().length) {
      this.setSaveStatus("");
      return;
    }
    this.setSaveStatus("Saving…");
    const outcomes = await this.outbox.flush(this.api, () => Date.now(), force);
    this.handleOutcomes(outcomes);
    const due = this.outbox.nextDue();
    if (due !== null) {
      this.outboxTimer = window.setTimeout(() => void this.flushOutbox(), Math.max(250, due - Date.now()));
    }
  }

  private handleOutcomes(outcomes: FlushOutcome[]): void {
    let saved = false;
    for (const o of outcomes) {
      if (o.kind === "saved") {
        saved = true;
        this.drafts.markSubmitted(o.taskId);
        this.refused.remove(o.taskId);
      } else if (o.kind === "rejected") {
        // Shown until dismissed, with the draft (the ratings) kept until then.
        this.refused.add({ taskId: o.taskId, status: o.status, reason: o.error, refusedAt: Date.now() });
      }
    }
    this.showRefused();
    if (!this.renderSaveStatus()) {
      this.setSaveStatus(saved ? "All work saved" : "");
    }
    if (saved) {
      void this.refreshMe();
      // The saved task's lease is gone, so a prefetch refused at the two-lease limit can run now.
      if (this.current && !this.prefetched) {
        void this.prefetch();
      }
    }
  }

  /** Shows what the outbox is waiting on (with a live countdown); false when it is empty. */
  private renderSaveStatus(): boolean {
    const waiting = this.outbox.entries();
    if (!waiting.length) {
      return false;
    }
    const first = waiting.reduce((a, b) => (b.nextAttemptAt < a.nextAttemptAt ? b : a));
    const secs = Math.max(0, Math.ceil((first.nextAttemptAt - Date.now()) / 1000));
    const what = waiting.length === 1 ? "1 label" : `${waiting.length} labels`;
    if (first.attempts) {
      const when = secs ? `retrying in ${secs} s` : "retrying";
      this.setSaveStatus(`Saving… ${when} (${what} waiting: ${first.lastError})`, true);
    } else {
      this.setSaveStatus(`Saving ${what}…`);
    }
    return true;
  }

  private setSaveStatus(text: string, problem = false): void {
    const node = document.getElementById("save-status");
    if (node) {
      node.textContent = text;
      node.classList.toggle("retrying", problem);
    }
  }

  private showRefused(): void {
    renderRefused(
      this.refusedPanel,
      this.refused.entries(),
      (taskId) => this.drafts.load(taskId),
      (taskId) => {
        this.refused.remove(taskId);
        this.drafts.remove(taskId);
        this.showRefused();
      },
    );
  }

  private async refreshMe(): Promise<void> {
    let me: Me;
    try {
      me = await this.api.me();
    } catch {
      return;
    }
    const node = document.getElementById("me-stats");
    if (!node) {
      return;
    }
    const parts = [
      `<span><strong>${me.labels_today}</strong> today</span>`,
      `<span><strong>${me.labels_total}</strong> total</span>`,
    ];
    if (me.gold_agreement !== null) {
      parts.push(`<span><strong>${Math.round(me.gold_agreement * 100)}%</strong> gold agreement</span>`);
    }
    if (me.screening === "pending") {
      parts.push('<span class="badge">Screening</span>');
    }
    node.innerHTML = parts.join("");
    node.dataset.today = String(me.labels_today);
    node.dataset.total = String(me.labels_total);
  }

  // --- page states ------------------------------------------------------------------------

  private say(level: "info" | "warn" | "error" | null, text = ""): void {
    this.notice.hidden = level === null;
    this.notice.className = `notice ${level ?? ""}`;
    this.notice.textContent = text;
  }

  private showLoading(): void {
    this.root.dataset.state = "loading";
    this.root.replaceChildren(el("p", { class: "state-message muted" }, "Loading the next task…"));
  }

  private showEmpty(): void {
    this.current = null;
    this.drafts.currentTaskId = null;
    this.root.dataset.state = "empty";
    const again = el("button", { type: "button", class: "btn primary" }, "Check again");
    again.addEventListener("click", () => void this.advance());
    this.root.replaceChildren(
      el(
        "section",
        { class: "empty", "aria-live": "polite" },
        el("h2", {}, "The queue is empty — check back later"),
        el("p", { class: "muted" }, "New solutions are queued as the selector scores them. This page checks again every 30 seconds."),
        again,
      ),
    );
    this.emptyTimer = window.setTimeout(() => void this.advance(), EMPTY_POLL_MS);
  }

  private showError(err: unknown): void {
    this.root.dataset.state = "error";
    let title = "Something went wrong";
    let detail = err instanceof Error ? err.message : String(err);
    if (err instanceof ApiError) {
      detail = err.describe();
      if (err.status === 403) {
        title = "You are not in the annotators group";
        detail = `Ask an administrator to add your account to the annotators group. (${err.describe()})`;
      } else if (err.status === 0) {
        title = "Cannot reach the server";
        detail = "Check your connection; your saved work stays in this browser.";
      }
    }
    const again = el("button", { type: "button", class: "btn primary" }, "Try again");
    again.addEventListener("click", () => void this.advance());
    this.root.replaceChildren(
      el("section", { class: "error-state", role: "alert" }, el("h2", {}, title), el("p", {}, detail), again),
    );
  }
}

function inClosedDialog(target: EventTarget | null): boolean {
  const dialog = target instanceof Element ? target.closest("dialog") : null;
  return dialog !== null && !dialog.open;
}
