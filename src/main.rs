use std::process::ExitCode;

use clap::Parser;
use plugboard::cli::{Cli, Command, KeysCommand, ProvidersCommand, RestoreCommand, UserCommand};
use plugboard::config::Settings;
use plugboard::{app, cli, telemetry};

fn main() -> ExitCode {
    let args = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Cli) -> anyhow::Result<()> {
    // Commands that need no configuration run even when it is broken.
    match &args.command {
        Some(Command::Keys(KeysCommand::Generate { id })) => {
            return cli::keys_generate(id.as_deref());
        }
        Some(Command::Providers(ProvidersCommand::Validate { dir: Some(dir) })) => {
            return cli::providers_validate(dir);
        }
        _ => {}
    }
    let settings = Settings::load()?;
    telemetry::init(&settings.log);
    match args.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let state = app::build_state(settings).await?;
            app::serve_until_signal(state).await
        }
        Command::Migrate => cli::migrate(&settings).await,
        Command::Worker { count } => {
            let state = app::build_state(settings).await?;
            let count = count.unwrap_or(state.settings.sync.workers).max(1);
            tracing::info!(count, "plugboard worker running");
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let workers = tokio::spawn(plugboard::sync::worker::run_workers(state, count, stopped));
            app::shutdown_signal().await;
            tracing::info!("stopping workers after their current page");
            let _ = stop.send(true);
            let _ = workers.await;
            Ok(())
        }
        Command::User(UserCommand::Create(create)) => cli::user_create(&settings, &create).await,
        Command::User(UserCommand::ResetPassword(args)) => {
            cli::user_reset_password(&settings, &args).await
        }
        Command::Keys(KeysCommand::Status) => cli::keys_status(&settings).await,
        Command::Keys(KeysCommand::Rotate { batch_size }) => {
            cli::keys_rotate(&settings, batch_size).await
        }
        Command::Keys(KeysCommand::Generate { .. }) => Ok(()),
        Command::Restore(RestoreCommand::Mark { backup_taken_at }) => {
            cli::restore_mark(settings, backup_taken_at).await
        }
        Command::Providers(ProvidersCommand::Validate { dir }) => {
            cli::providers_validate(&dir.unwrap_or_else(|| settings.providers.dir.clone()))
        }
    }
}
