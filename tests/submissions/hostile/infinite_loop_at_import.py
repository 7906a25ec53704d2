# hostile: never finishes importing
# expect: score == 0
# reason: time limit
while True:
    pass
