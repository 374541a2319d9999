"""A matmul whose result is float32 in a model that computes in bfloat16."""

import functools

import jax
import jax.numpy as jnp


def einsum_float32(equation: str, a: jax.Array, b: jax.Array) -> jax.Array:
    """`jnp.einsum(equation, a, b)` accumulated and returned in float32, for what a softmax reads.

    Written as the plain einsum with `preferred_element_type=float32`, its gradient's matmuls would
    take the float32 cotangent with a bfloat16 operand, which makes them float32 matmuls, twice the
    time of bfloat16 ones on an accelerator. Here the cotangent is rounded to the operands' dtype
    first, so that the backward pass's matmuls run in bfloat16 as the forward pass's do. With float32
    operands this is the plain einsum."""
    if a.dtype == b.dtype == jnp.float32:
        return jnp.einsum(equation, a, b, preferred_element_type=jnp.float32)
    return _rounded_cotangent_einsum(equation, a, b)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _rounded_cotangent_einsum(equation, a, b):
    return jnp.einsum(equation, a, b, preferred_element_type=jnp.float32)


def _forward(equation, a, b):
    return _rounded_cotangent_einsum(equation, a, b), (a, b)


def _backward(equation, operands, cotangent):
    _, vjp = jax.vjp(functools.partial(jnp.einsum, equation), *operands)
    return vjp(cotangent.astype(jnp.result_type(*operands)))


_rounded_cotangent_einsum.defvjp(_forward, _backward)
