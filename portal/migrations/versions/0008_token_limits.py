"""token spending limits: a limit and reset per token, the counters of what it used
(holds in flight; settled in the day, week and month of the last settlement, and in
all), the token each hold counts on, and the limit a connect code's token gets

Existing tokens get no limit; their settled counters are filled from their usage
records, so a limit set later counts what was already spent in its period.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 22:47:33.460141
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

import portal.db.base

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('connect_codes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('limit_units', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('limit_reset', sa.String(length=16), nullable=True))

    with op.batch_alter_table('gateway_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('limit_units', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('limit_reset', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('held_units', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('spent_day', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('spent_week', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('spent_month', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('spent_total', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('spent_at', portal.db.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_check_constraint(
            op.f('ck_gateway_tokens_limit_positive'), 'limit_units IS NULL OR limit_units > 0'
        )
        batch_op.create_check_constraint(
            op.f('ck_gateway_tokens_limit_reset_known'),
            "limit_reset IS NULL OR limit_reset IN ('daily', 'weekly', 'monthly')",
        )

    with op.batch_alter_table('reservations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('token_id', sa.String(length=36), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_reservations_token_id_gateway_tokens'), 'gateway_tokens', ['token_id'], ['id'], ondelete='SET NULL')

    _fill_spent_counters()


def _fill_spent_counters() -> None:
    """Each token's settled counters from its usage records, as of now (UTC)."""
    now = datetime.now(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    starts = {
        'spent_day': day,
        'spent_week': day - timedelta(days=day.weekday()),
        'spent_month': day.replace(day=1),
        'spent_total': None,
    }
    usage = sa.table(
        'usage_records',
        sa.column('token_id', sa.String()),
        sa.column('credits', sa.BigInteger()),
        sa.column('ended_at', portal.db.base.UTCDateTime()),
    )
    tokens = sa.table(
        'gateway_tokens',
        sa.column('id', sa.String()),
        sa.column('spent_at', portal.db.base.UTCDateTime()),
        *(sa.column(name, sa.BigInteger()) for name in starts),
    )

    def spent_since(start: datetime | None) -> sa.ScalarSelect[int]:
        condition = usage.c.token_id == tokens.c.id
        if start is not None:
            condition = condition & (usage.c.ended_at >= start)
        return (
            sa.select(sa.func.coalesce(sa.func.sum(usage.c.credits), 0))
            .where(condition)
            .scalar_subquery()
        )

    op.execute(
        tokens.update().values(
            spent_at=now, **{name: spent_since(start) for name, start in starts.items()}
        )
    )


def downgrade() -> None:
    with op.batch_alter_table('reservations', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_reservations_token_id_gateway_tokens'), type_='foreignkey')
        batch_op.drop_column('token_id')

    with op.batch_alter_table('gateway_tokens', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_gateway_tokens_limit_reset_known'), type_='check')
        batch_op.drop_constraint(op.f('ck_gateway_tokens_limit_positive'), type_='check')
        batch_op.drop_column('spent_at')
        batch_op.drop_column('spent_total')
        batch_op.drop_column('spent_month')
        batch_op.drop_column('spent_week')
        batch_op.drop_column('spent_day')
        batch_op.drop_column('held_units')
        batch_op.drop_column('limit_reset')
        batch_op.drop_column('limit_units')

    with op.batch_alter_table('connect_codes', schema=None) as batch_op:
        batch_op.drop_column('limit_reset')
        batch_op.drop_column('limit_units')
