//! The server: shared state, the [`router`], and [`serve`] / [`serve_blocking`].

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::response::unix_now;
use crate::worker::{Job, Worker};
use crate::{generate, info, ServeError, ServeOptions, ServedModel};
use axum::routing::{get, post};
use axum::Router;
use kiln_data::{ChatTemplate, Tokenizer};
use kiln_infer::SchedulerConfig;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

/// What every handler shares.
pub(crate) struct Shared {
    pub name: String,
    pub tok: Arc<Tokenizer>,
    pub chat: Option<ChatTemplate>,
    pub bos: Option<u32>,
    /// The model's context length.
    pub ctx: usize,
    /// The model's vocabulary size.
    pub vocab: usize,
    pub opts: ServeOptions,
    pub metrics: Arc<Metrics>,
    /// Unix seconds at start (the model's `created`).
    pub created: u64,
    jobs: SyncSender<Job>,
    /// Jobs admitted and not finished (see [`Worker::in_flight`]).
    in_flight: Arc<AtomicUsize>,
    worker: JoinHandle<()>,
}

/// The state handed to every handler.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

impl AppState {
    pub fn shared(&self) -> &Shared {
        &self.0
    }

    /// Queues `job` for the worker: 429 when `queue_len` jobs already wait besides the
    /// `max_num_seqs` being generated, 503 when the worker is gone.
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        let s = &self.0;
        let cap = s.opts.queue_len.saturating_add(s.opts.max_num_seqs);
        if s.in_flight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < cap).then_some(n + 1)).is_err() {
            return Err(ApiError::queue_full(s.opts.queue_len));
        }
        s.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
        match s.jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => {
                s.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
                s.in_flight.fetch_sub(1, Ordering::AcqRel);
                Err(match e {
                    TrySendError::Full(_) => ApiError::queue_full(s.opts.queue_len),
                    TrySendError::Disconnected(_) => ApiError::unavailable(),
                })
            }
        }
    }

    pub fn worker_alive(&self) -> bool {
        !self.0.worker.is_finished()
    }
}

/// The server's routes over `model`, with its generation worker thread already started (the
/// thread ends when the router and every clone of it are dropped). Use it to embed the server
/// or to test it; [`serve`] runs it on a listener.
///
/// Routes: `POST /v1/completions`, `POST /v1/chat/completions`, `GET /v1/models`,
/// `GET /v1/models/{model}`, `GET /health`, `GET /metrics`.
pub fn router(model: ServedModel, opts: ServeOptions) -> Result<Router, ServeError> {
    opts.validate()?;
    let device = model.model.wte.weight.device().clone();
    let tok = Arc::new(model.tok);
    let metrics = Arc::new(Metrics::default());
    // Admission is counted by `in_flight`; the channel has room for every admitted job.
    let (jobs, queue) = sync_channel(opts.queue_len.saturating_add(opts.max_num_seqs).min(1 << 16));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let sched = scheduler_config(&model.model.cfg, &opts);
    metrics.kv_blocks_total.store(sched.num_blocks, Ordering::Relaxed);
    let worker = Worker {
        sched,
        model: model.model,
        device,
        tok: tok.clone(),
        stop_tokens: model.stop,
        metrics: metrics.clone(),
        in_flight: in_flight.clone(),
    };
    let ctx = worker.model.cfg.n_positions;
    let vocab = worker.model.cfg.vocab_size;
    let worker = std::thread::Builder::new()
        .name("kiln-serve-worker".into())
        .spawn(move || {
            // This thread becomes worker 0 of a pool of its own, as large as the global one: a
            // generation's kernels fork from it instead of handing each kernel to the pool and
            // sleeping until it is done (two context switches per kernel). If the pool cannot be
            // built, the global pool serves as before.
            let threads = rayon::current_num_threads();
            let _pool = rayon::ThreadPoolBuilder::new().num_threads(threads).use_current_thread().build().ok();
            worker.run(queue)
        })
        .map_err(|source| ServeError::Io { what: "starting the generation worker".into(), source })?;
    let state = AppState(Arc::new(Shared {
        name: model.name,
        tok,
        chat: model.chat,
        bos: model.bos,
        ctx,
        vocab,
        opts,
        metrics,
        created: unix_now(),
        jobs,
        in_flight,
        worker,
    }));
    Ok(Router::new()
        .route("/v1/completions", post(generate::completions))
        .route("/v1/chat/completions", post(generate::chat))
        .route("/v1/models", get(info::models))
        .route("/v1/models/{*model}", get(info::model))
        .route("/health", get(info::health))
        .route("/metrics", get(info::metrics))
        .fallback(info::not_found)
        .method_not_allowed_fallback(info::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), info::count_requests))
        .with_state(state))
}

/// The batching engine's limits: the pool is `opts.kv_blocks` blocks, or by default enough for
/// `max_num_seqs` full contexts within `kv_cache_bytes` (at least one full context).
fn scheduler_config(cfg: &kiln_models::gpt::GptConfig, opts: &ServeOptions) -> SchedulerConfig {
    let bs = opts.block_size;
    let ctx_blocks = cfg.n_positions.div_ceil(bs);
    let row = kiln_infer::kv_row_bytes(opts.kv_dtype, cfg.head_dim()).unwrap_or(0);
    let block_bytes = 2 * cfg.n_layer * cfg.n_kv_head * row * bs;
    let num_blocks = if opts.kv_blocks > 0 {
        opts.kv_blocks
    } else {
        (opts.max_num_seqs * ctx_blocks).min(opts.kv_cache_bytes / block_bytes.max(1)).max(ctx_blocks)
    };
    SchedulerConfig {
        num_blocks,
        block_size: bs,
        kv_dtype: opts.kv_dtype,
        prefix_caching: opts.prefix_caching,
        max_num_seqs: opts.max_num_seqs,
        max_tokens_per_step: opts.max_tokens_per_step,
    }
}

/// Serves `model` on `listener` until the listener fails (it runs until the process ends).
pub async fn serve(
    listener: tokio::net::TcpListener,
    model: ServedModel,
    opts: ServeOptions,
) -> Result<(), ServeError> {
    let app = router(model, opts)?;
    axum::serve(listener, app).await.map_err(|source| ServeError::Io { what: "serving HTTP".into(), source })
}

/// [`serve`] on a new tokio runtime, bound to `addr` (e.g. `127.0.0.1:8000`); prints the
/// address it listens on to stdout once bound. Blocks until the server fails.
pub fn serve_blocking(addr: &str, model: ServedModel, opts: ServeOptions) -> Result<(), ServeError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("kiln-serve-http")
        .build()
        .map_err(|source| ServeError::Io { what: "building the tokio runtime".into(), source })?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Io { what: format!("binding {addr}"), source })?;
        let local = listener
            .local_addr()
            .map_err(|source| ServeError::Io { what: "reading the bound address".into(), source })?;
        println!("kiln serve: model {:?} on http://{local} (OpenAI API at http://{local}/v1)", model.name);
        serve(listener, model, opts).await
    })
}
