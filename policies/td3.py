"""The TD3 update for residual policies: stay near the gait unless the critic is sure.

A residual policy starts as the sine gait (action 0), and the replay buffer then holds
actions near 0. TD3's actor follows the critic's slope wherever it points, and outside
the actions it has seen the critic guesses: twice, runs of :mod:`policies.train` saw the
actor walk off to large residuals within 20 000 steps of being released and fall in every
evaluation world. :func:`regularised_update` is TD3's update (clipped double-Q critics,
target policy smoothing, delayed actor and target updates) with one change, in the spirit
of TD3+BC (Fujimoto and Gu, 2021): the actor's loss is the critic's value scaled by its
mean magnitude, plus ``residual_weight`` times the mean squared action, a pull toward the
gait that only a clear gain in value outweighs.

It works on a stable-baselines3 TD3 model (its networks, optimisers, replay buffer and
hyperparameters); :class:`policies.learner.Learner` calls it through the model's
``train`` method (see :func:`policies.train.make_model`).
"""

from __future__ import annotations

from typing import Any


def regularised_update(model: Any, gradient_steps: int, batch_size: int, residual_weight: float) -> None:
    """Run ``gradient_steps`` TD3 updates on ``model`` (see the module docstring)."""
    import torch
    from stable_baselines3.common.utils import polyak_update

    model.policy.set_training_mode(True)
    model._update_learning_rate([model.actor.optimizer, model.critic.optimizer])
    for _ in range(gradient_steps):
        model._n_updates += 1
        batch = model.replay_buffer.sample(batch_size, env=model._vec_normalize_env)
        with torch.no_grad():
            smoothing = torch.randn_like(batch.actions) * model.target_policy_noise
            smoothing = smoothing.clamp(-model.target_noise_clip, model.target_noise_clip)
            next_actions = (model.actor_target(batch.next_observations) + smoothing).clamp(-1.0, 1.0)
            next_q = torch.cat(model.critic_target(batch.next_observations, next_actions), dim=1)
            target = (
                batch.rewards + (1.0 - batch.dones) * model.gamma * next_q.min(dim=1, keepdim=True).values
            )
        estimates = model.critic(batch.observations, batch.actions)
        critic_loss = torch.stack([torch.nn.functional.mse_loss(q, target) for q in estimates]).sum()
        model.critic.optimizer.zero_grad()
        critic_loss.backward()
        model.critic.optimizer.step()
        if model._n_updates % model.policy_delay:
            continue
        actions = model.actor(batch.observations)
        value = model.critic.q1_forward(batch.observations, actions)
        scale = value.abs().mean().detach().clamp(min=1e-6)
        actor_loss = -(value.mean() / scale) + residual_weight * (actions * actions).mean()
        model.actor.optimizer.zero_grad()
        actor_loss.backward()
        model.actor.optimizer.step()
        polyak_update(model.critic.parameters(), model.critic_target.parameters(), model.tau)
        polyak_update(model.actor.parameters(), model.actor_target.parameters(), model.tau)
