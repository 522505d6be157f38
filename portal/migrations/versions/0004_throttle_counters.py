"""throttle counters: one row per abuse limit key, counted and decided in one UPDATE
(replaces sign_in_failures, whose count-then-decide let parallel guesses through)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:00:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import portal.db.base

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('throttle_counters',
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('subject_hash', sa.String(length=64), nullable=True),
    sa.Column('hits', sa.Integer(), nullable=False),
    sa.Column('window_start', portal.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('blocked_until', portal.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key_hash', name=op.f('pk_throttle_counters'))
    )
    with op.batch_alter_table('throttle_counters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_throttle_counters_subject_hash'), ['subject_hash'], unique=False)

    # Failures older than 15 minutes no longer counted: nothing worth carrying over.
    with op.batch_alter_table('sign_in_failures', schema=None) as batch_op:
        batch_op.drop_index('ix_sign_in_failures_key')
    op.drop_table('sign_in_failures')


def downgrade() -> None:
    op.create_table('sign_in_failures',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('failed_at', portal.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sign_in_failures'))
    )
    with op.batch_alter_table('sign_in_failures', schema=None) as batch_op:
        batch_op.create_index('ix_sign_in_failures_key', ['key_hash', 'failed_at'], unique=False)

    with op.batch_alter_table('throttle_counters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_throttle_counters_subject_hash'))
    op.drop_table('throttle_counters')
