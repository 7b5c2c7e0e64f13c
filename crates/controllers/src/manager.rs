//! The controller manager: one client, one set of shared informers, and every control loop of the workspace polled
//! together in one task.

use ferry_runtime::{Informers, Task};
use tokio::sync::watch;

use crate::runner::{self, ControllersConfig, ControllersError};
use crate::{collector, loadbalancer, nodelifecycle};

/// Every control loop built on the shared runtime, subscribed to `informers`.
pub fn runtime_controllers(informers: &mut Informers, config: &ControllersConfig) -> Vec<Task> {
    let mut tasks = vec![
        runner::controller(informers),
        loadbalancer::controller(informers, config.load_balancer_pool.clone()),
        nodelifecycle::controller(informers, config.node_monitor_grace_period),
        collector::controller(informers),
    ];
    tasks.extend(ferry_replicaset::controllers(informers));
    tasks.extend(ferry_deployment::controllers(informers));
    tasks.extend(ferry_daemonset::controllers(informers));
    tasks.extend(ferry_batch::controllers(informers));
    tasks
}

/// Runs every controller until `shutdown` becomes `true` (or its sender is dropped). Spawns no tasks: everything
/// runs inside this future, so it is done when it returns.
pub async fn run(config: ControllersConfig, mut shutdown: watch::Receiver<bool>) -> Result<(), ControllersError> {
    let client = tokio::select! {
        biased;
        _ = ferry_client::stopped(&mut shutdown) => return Ok(()),
        client = ferry_client::connect(&config.kubeconfig) => client?,
    };
    let mut informers = Informers::new(client.clone());
    let tasks = runtime_controllers(&mut informers, &config);
    ferry_runtime::run_all(informers, tasks, shutdown).await?;
    Ok(())
}
