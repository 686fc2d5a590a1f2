"""Tariffs and cost (OCPP 2.0.1 functional block I): what a session costs, the running
cost while charging (I02, CostUpdated), the final cost when it ends (I03, totalCost) and
the tariff text shown to the driver (I01, personalMessage)."""
